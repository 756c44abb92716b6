"""Coordinate-wise trimmed mean.

Yin, Chen, Ramchandran and Bartlett (2018), "Byzantine-Robust Distributed Learning:
Towards Optimal Statistical Rates", ICML: per coordinate, drop the largest and the
smallest ``trim_fraction`` of the values and average the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fedbus.aggregation.errors import IncompatibleUpdateError
from fedbus.aggregation.helpers import stack_deltas, unflatten
from fedbus.aggregation.strategy import Strategy
from fedbus.aggregation.updates import ClientUpdate, Model

__all__ = ["TrimmedMean"]


class TrimmedMean(Strategy):
    """Coordinate-wise trimmed mean of the deltas (sample counts are ignored).

    Unweighted on purpose: a Byzantine client could otherwise claim a huge sample
    count. Tolerates fewer than ``trim_fraction * n`` corrupted updates.

    Parameters
    ----------
    trim_fraction
        Fraction of the values dropped at *each* end, in [0, 0.5).
    """

    def __init__(self, *, trim_fraction: float = 0.1) -> None:
        if not 0.0 <= trim_fraction < 0.5:
            raise IncompatibleUpdateError("trim_fraction must be in [0, 0.5)")
        self.trim_fraction = trim_fraction

    def combine(self, updates: Sequence[ClientUpdate]) -> Model:
        """Per coordinate, the mean of the values left after trimming both ends."""
        matrix, layout = stack_deltas(updates)
        trimmed = math.floor(self.trim_fraction * len(updates))
        ordered = np.sort(matrix, axis=0)
        kept = ordered[trimmed : len(updates) - trimmed]
        return unflatten(kept.mean(axis=0), layout)
