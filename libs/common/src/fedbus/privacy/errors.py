"""Errors raised by the privacy accounting math.

All are :class:`fedbus.errors.NonRetryableError` (the same input fails the same way
again); an invalid parameter is also a ``ValueError``.
"""

from __future__ import annotations

from fedbus.errors import NonRetryableError

__all__ = ["InvalidPrivacyParameterError", "PrivacyError", "UnreachableTargetError"]


class PrivacyError(NonRetryableError):
    """Base class of every error raised by :mod:`fedbus.privacy`."""


class InvalidPrivacyParameterError(PrivacyError, ValueError):
    """A noise multiplier, sample rate, step count, delta or order is out of range."""


class UnreachableTargetError(PrivacyError):
    """No noise multiplier within the search range meets the target epsilon."""
