"""The checkpoint key, read from the environment.

The encryption itself is fedbus's one AES-GCM envelope, :class:`fedbus.storage.AesGcmCipher`,
which :class:`~fedbus_executor.checkpoint.CheckpointStore` uses.
"""

from __future__ import annotations

import base64
import binascii
import os

from fedbus.storage.crypto import KEY_SIZES
from fedbus_executor.errors import CheckpointError

__all__ = ["DEFAULT_KEY_ENV", "key_from_env"]

DEFAULT_KEY_ENV = "FEDBUS_CHECKPOINT_KEY"


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
    if len(key) not in KEY_SIZES:
        raise CheckpointError(f"${name} decodes to {len(key)} bytes; AES needs 16, 24 or 32")
    return key
