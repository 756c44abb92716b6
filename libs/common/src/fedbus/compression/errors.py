"""Errors of :mod:`fedbus.compression`."""

from __future__ import annotations

from fedbus.errors import NonRetryableError

__all__ = ["CompressionError"]


class CompressionError(NonRetryableError, ValueError):
    """An update cannot be encoded, or bytes are not a valid encoded update."""
