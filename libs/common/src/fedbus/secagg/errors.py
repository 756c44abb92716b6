"""Errors raised by :mod:`fedbus.secagg`; each carries the reason a person reads.

All are :class:`fedbus.errors.NonRetryableError`: the same messages would fail the same
way again. The protocol fails closed: when it cannot finish with the guarantees it
promised (too few survivors, a missing or inconsistent share, a request that would
reveal both secrets of one client), it raises instead of releasing anything.
"""

from __future__ import annotations

from fedbus.errors import NonRetryableError

__all__ = ["InvalidMessageError", "SecAggAbortedError", "SecAggError", "SecAggParamsError"]


class SecAggError(NonRetryableError):
    """Base class of every error raised by :mod:`fedbus.secagg`; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SecAggParamsError(SecAggError):
    """The protocol's parameters cannot work together (degree, threshold, bits, ...)."""


class InvalidMessageError(SecAggError):
    """A message is malformed, out of stage, from a stranger, or fails authentication.

    The receiver's state is left as it was: the message is refused, not half applied.
    """


class SecAggAbortedError(SecAggError):
    """The round cannot be completed safely and must produce no aggregate."""
