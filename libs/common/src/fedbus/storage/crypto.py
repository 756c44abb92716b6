"""AES-GCM encryption at rest: fedbus's one envelope, for artifacts and checkpoints alike.

An envelope is ``FBE2 | key id length (1 byte) | key id (ASCII) | nonce (12 bytes) |
ciphertext and 16-byte tag``, encrypted under a fresh random nonce. The associated data is the
header (magic, length and key id) followed by the caller's associated data (the object key of
an artifact, the file name of a checkpoint), so a body moved to another name, or relabelled
with another key id, no longer decrypts.

A cipher holds a keyring: several keys by id, one of them current. It writes with the current
key and reads with whichever key the envelope names, so rotating is adding a key, making it
current and keeping the old ones for as long as objects written under them are kept.

Readers also accept the two formats written before key ids, trying each key of the ring:
``FBE1 | nonce | ciphertext and tag`` (the caller's associated data authenticated) and the
executor's older checkpoint envelope ``FBENC1 | nonce | ciphertext and tag`` (the magic
``FBENC1`` itself as the associated data). Nothing writes them any more.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedbus.errors import NonRetryableError

__all__ = ["DEFAULT_KEY_ID", "KEY_ID_PATTERN", "KEY_SIZES", "AesGcmCipher", "DecryptionError"]

KEY_SIZES = (16, 24, 32)
"""The AES key lengths in bytes (AES-128, -192, -256)."""

KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""A key id: 1 to 64 ASCII letters, digits, dots, underscores or dashes (not first)."""

DEFAULT_KEY_ID = "default"
"""The id of a cipher built from a single key."""

_MAGIC = b"FBE2"
_FBE1 = b"FBE1"
_FBENC1 = b"FBENC1"
_NONCE = 12
_TAG = 16


class DecryptionError(NonRetryableError):
    """Not an envelope, an unknown key id, the wrong key, or tampered bytes: refused."""


class AesGcmCipher:
    """AES-GCM over a keyring, with a random 96-bit nonce per envelope.

    Parameters
    ----------
    key
        16, 24 or 32 bytes: a ring of this one key, under ``key_id``.
    key_id
        The id written into each envelope's header.

    Build a ring of several keys with :meth:`from_keys`.
    """

    def __init__(self, key: bytes, *, key_id: str = DEFAULT_KEY_ID) -> None:
        self._keys: dict[str, AESGCM] = {}
        self._current = key_id
        self._add(key_id, key)

    @classmethod
    def from_keys(cls, keys: Mapping[str, bytes], *, current: str) -> AesGcmCipher:
        """A ring of ``keys`` by id; ``current`` encrypts, every key decrypts."""
        if current not in keys:
            raise ValueError(f"the current key id {current!r} is not among {sorted(keys)}")
        cipher = cls(keys[current], key_id=current)
        for key_id, key in keys.items():
            if key_id != current:
                cipher._add(key_id, key)
        return cipher

    @classmethod
    def from_base64(cls, text: str, *, key_id: str = DEFAULT_KEY_ID) -> AesGcmCipher:
        """Build from one base64 key (e.g. ``FEDBUS_CHECKPOINT_KEY``)."""
        return cls(base64.b64decode(text, validate=True), key_id=key_id)

    @property
    def current_key_id(self) -> str:
        """The id of the key new envelopes are written with."""
        return self._current

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every id in the ring (never the keys themselves)."""
        return tuple(self._keys)

    def __repr__(self) -> str:
        return f"AesGcmCipher(current={self._current!r}, key_ids={list(self._keys)!r})"

    def _add(self, key_id: str, key: bytes) -> None:
        if not KEY_ID_PATTERN.fullmatch(key_id):
            raise ValueError(
                f"a key id is 1 to 64 letters, digits, '.', '_' or '-', got {key_id!r}"
            )
        if len(key) not in KEY_SIZES:
            raise ValueError(f"key {key_id!r}: an AES key is 16, 24 or 32 bytes, got {len(key)}")
        self._keys[key_id] = AESGCM(key)

    def encrypt(self, data: bytes, *, associated: bytes) -> bytes:
        """``FBE2 | len | key id | nonce | ciphertext+tag``; give ``associated`` to decrypt."""
        header = _header(self._current)
        nonce = os.urandom(_NONCE)
        sealed = self._keys[self._current].encrypt(nonce, data, header + associated)
        return header + nonce + sealed

    def decrypt(self, body: bytes, *, associated: bytes) -> bytes:
        """Inverse of :meth:`encrypt`, also reading ``FBE1`` and ``FBENC1`` envelopes.

        Raises
        ------
        DecryptionError
            When ``body`` is not an envelope, names a key id not in the ring, the key is
            wrong or a byte was changed.
        """
        if body.startswith(_MAGIC):
            return self._decrypt_fbe2(body, associated)
        if body.startswith(_FBE1):
            return self._decrypt_any_key(body[len(_FBE1) :], associated)
        if body.startswith(_FBENC1):
            # The executor's checkpoints before the one envelope authenticated only the magic.
            return self._decrypt_any_key(body[len(_FBENC1) :], _FBENC1)
        raise DecryptionError("not an encrypted fedbus envelope (no FBE2, FBE1 or FBENC1 header)")

    def _decrypt_fbe2(self, body: bytes, associated: bytes) -> bytes:
        start = len(_MAGIC) + 1
        if len(body) < start:
            raise DecryptionError("truncated fedbus envelope")
        end = start + body[len(_MAGIC)]
        try:
            key_id = body[start:end].decode("ascii")
        except UnicodeDecodeError:
            raise DecryptionError("malformed fedbus envelope: the key id is not ASCII") from None
        if len(body) < end + _NONCE + _TAG:
            raise DecryptionError("truncated fedbus envelope")
        aead = self._keys.get(key_id)
        if aead is None:
            raise DecryptionError(
                f"encrypted with key id {key_id!r}, which is not among the keys held "
                f"({', '.join(self._keys)})"
            )
        nonce = body[end : end + _NONCE]
        try:
            return aead.decrypt(nonce, body[end + _NONCE :], body[:end] + associated)
        except InvalidTag as exc:
            raise DecryptionError(
                f"wrong key for key id {key_id!r}, or tampered with: authentication failed"
            ) from exc

    def _decrypt_any_key(self, rest: bytes, aad: bytes) -> bytes:
        """An envelope without a key id: whichever key of the ring authenticates it."""
        if len(rest) < _NONCE + _TAG:
            raise DecryptionError("truncated fedbus envelope")
        nonce, sealed = rest[:_NONCE], rest[_NONCE:]
        for aead in self._keys.values():
            try:
                return aead.decrypt(nonce, sealed, aad)
            except InvalidTag:
                continue
        raise DecryptionError("wrong key, or tampered with: authentication failed")


def _header(key_id: str) -> bytes:
    raw = key_id.encode("ascii")
    return _MAGIC + bytes([len(raw)]) + raw
