"""AES-256-GCM for data at rest, with the key taken from the environment."""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedbus_executor.errors import CheckpointError

__all__ = ["DEFAULT_KEY_ENV", "decrypt", "encrypt", "key_from_env"]

DEFAULT_KEY_ENV = "FEDBUS_CHECKPOINT_KEY"
MAGIC = b"FBENC1"
NONCE_BYTES = 12


def key_from_env(name: str = DEFAULT_KEY_ENV) -> bytes:
    """Read a base64 AES key (16, 24 or 32 bytes) from environment variable ``name``.

    Raises
    ------
    CheckpointError
        When the variable is unset, not base64, or the wrong length.
    """
    raw = os.environ.get(name)
    if not raw:
        raise CheckpointError(f"encryption asked for but ${name} is not set (base64 AES key)")
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError(f"${name} is not valid base64: {exc}") from exc
    if len(key) not in (16, 24, 32):
        raise CheckpointError(f"${name} decodes to {len(key)} bytes; AES needs 16, 24 or 32")
    return key


def encrypt(data: bytes, *, key: bytes) -> bytes:
    """Encrypt with a fresh random nonce; output is ``MAGIC | nonce | ciphertext+tag``."""
    nonce = os.urandom(NONCE_BYTES)
    return MAGIC + nonce + AESGCM(key).encrypt(nonce, data, MAGIC)


def decrypt(blob: bytes, *, key: bytes, name: str = "data") -> bytes:
    """Decrypt ``encrypt`` output.

    Raises
    ------
    CheckpointError
        When ``blob`` is not encrypted, was tampered with, or ``key`` is wrong.
    """
    if not blob.startswith(MAGIC):
        raise CheckpointError(f"{name} is not an encrypted fedbus file")
    nonce = blob[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, blob[len(MAGIC) + NONCE_BYTES :], MAGIC)
    except InvalidTag:
        raise CheckpointError(
            f"{name} failed authentication: wrong key, or the file was tampered with"
        ) from None
