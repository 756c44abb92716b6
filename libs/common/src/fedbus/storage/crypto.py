"""AES-256-GCM encryption of artifacts at rest (key from the environment)."""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedbus.errors import NonRetryableError

__all__ = ["AesGcmCipher", "DecryptionError"]

_MAGIC = b"FBE1"
_NONCE = 12


class DecryptionError(NonRetryableError):
    """Wrong key, or the ciphertext was tampered with: the artifact is refused."""


class AesGcmCipher:
    """AES-256-GCM with a random 96-bit nonce per object; the object key is authenticated too.

    Parameters
    ----------
    key
        32 bytes.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError(f"an AES-256 key is 32 bytes, got {len(key)}")
        self._aead = AESGCM(key)

    @classmethod
    def from_base64(cls, text: str) -> AesGcmCipher:
        """Build from a base64 key (e.g. ``FEDBUS_ARTIFACT_KEY``)."""
        return cls(base64.b64decode(text, validate=True))

    def encrypt(self, data: bytes, *, associated: bytes) -> bytes:
        """``FBE1 | nonce | ciphertext+tag``."""
        nonce = os.urandom(_NONCE)
        return _MAGIC + nonce + self._aead.encrypt(nonce, data, associated)

    def decrypt(self, body: bytes, *, associated: bytes) -> bytes:
        """Inverse of :meth:`encrypt`; raises :class:`DecryptionError` on any failure."""
        if not body.startswith(_MAGIC) or len(body) < len(_MAGIC) + _NONCE + 16:
            raise DecryptionError("artifact is not encrypted with fedbus AES-GCM")
        nonce = body[len(_MAGIC) : len(_MAGIC) + _NONCE]
        try:
            return self._aead.decrypt(nonce, body[len(_MAGIC) + _NONCE :], associated)
        except InvalidTag as exc:
            raise DecryptionError("wrong key or tampered artifact: authentication failed") from exc
