"""Errors raised by the aggregation strategies.

All are :class:`fedbus.errors.NonRetryableError`: the same updates would fail the
same way again. A rejected *update* is not an error:
:func:`fedbus.aggregation.validate_update` returns a result with a reason.
"""

from __future__ import annotations

from fedbus.errors import NonRetryableError

__all__ = [
    "AggregationError",
    "EmptyRoundError",
    "IncompatibleUpdateError",
    "RoundAbortedError",
]


class AggregationError(NonRetryableError):
    """Base class of every error raised by :mod:`fedbus.aggregation`."""


class EmptyRoundError(AggregationError):
    """A round was aggregated without any update."""


class IncompatibleUpdateError(AggregationError, ValueError):
    """An update does not match the model (names, shapes) or the strategy's needs."""


class RoundAbortedError(AggregationError):
    """The round must not produce a model; ``reason`` says why.

    Raised by the differential-privacy wrappers when the updates given are not
    exactly the ones the noise was calibrated and the budget accounted for.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
