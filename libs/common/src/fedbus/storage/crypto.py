"""AES-GCM encryption at rest: fedbus's one envelope, for artifacts and checkpoints alike.

An envelope is ``FBE1 | nonce (12 bytes) | ciphertext and 16-byte tag``, encrypted under a
fresh random nonce with caller-given associated data (the object key of an artifact, the file
name of a checkpoint), so a body moved to another name no longer decrypts.

Readers also accept the executor's older checkpoint envelope, ``FBENC1 | nonce | ciphertext
and tag`` with the magic ``FBENC1`` itself as the associated data, so checkpoints written
before the formats were merged still resume. Nothing writes it any more.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedbus.errors import NonRetryableError

__all__ = ["KEY_SIZES", "AesGcmCipher", "DecryptionError"]

KEY_SIZES = (16, 24, 32)
"""The AES key lengths in bytes (AES-128, -192, -256)."""

_MAGIC = b"FBE1"
_LEGACY_MAGIC = b"FBENC1"
_NONCE = 12
_TAG = 16


class DecryptionError(NonRetryableError):
    """Not an envelope, the wrong key, or tampered bytes: the data is refused."""


class AesGcmCipher:
    """AES-GCM with a random 96-bit nonce per envelope and authenticated associated data.

    Parameters
    ----------
    key
        16, 24 or 32 bytes.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) not in KEY_SIZES:
            raise ValueError(f"an AES key is 16, 24 or 32 bytes, got {len(key)}")
        self._aead = AESGCM(key)

    @classmethod
    def from_base64(cls, text: str) -> AesGcmCipher:
        """Build from a base64 key (e.g. ``FEDBUS_ARTIFACT_KEY``)."""
        return cls(base64.b64decode(text, validate=True))

    def encrypt(self, data: bytes, *, associated: bytes) -> bytes:
        """``FBE1 | nonce | ciphertext+tag``; ``associated`` must be given again to decrypt."""
        nonce = os.urandom(_NONCE)
        return _MAGIC + nonce + self._aead.encrypt(nonce, data, associated)

    def decrypt(self, body: bytes, *, associated: bytes) -> bytes:
        """Inverse of :meth:`encrypt`, also reading the legacy ``FBENC1`` envelope.

        Raises
        ------
        DecryptionError
            When ``body`` is not an envelope, the key is wrong or a byte was changed.
        """
        if body.startswith(_MAGIC):
            magic, aad = _MAGIC, associated
        elif body.startswith(_LEGACY_MAGIC):
            # The executor's checkpoints before the one envelope authenticated only the magic.
            magic, aad = _LEGACY_MAGIC, _LEGACY_MAGIC
        else:
            raise DecryptionError("not an encrypted fedbus envelope (no FBE1 or FBENC1 header)")
        if len(body) < len(magic) + _NONCE + _TAG:
            raise DecryptionError("truncated fedbus envelope")
        nonce = body[len(magic) : len(magic) + _NONCE]
        try:
            return self._aead.decrypt(nonce, body[len(magic) + _NONCE :], aad)
        except InvalidTag as exc:
            raise DecryptionError("wrong key, or tampered with: authentication failed") from exc
