"""Coordinate-wise median.

Yin, Chen, Ramchandran and Bartlett (2018), "Byzantine-Robust Distributed Learning:
Towards Optimal Statistical Rates", ICML: the median of each coordinate over the
clients' deltas.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedbus.aggregation.helpers import stack_deltas, unflatten
from fedbus.aggregation.strategy import Strategy
from fedbus.aggregation.updates import ClientUpdate, Model

__all__ = ["CoordinateMedian"]


class CoordinateMedian(Strategy):
    """Coordinate-wise median of the deltas (sample counts are ignored).

    Tolerates any minority of corrupted updates, however large their values.
    """

    def combine(self, updates: Sequence[ClientUpdate]) -> Model:
        """Per coordinate, the median over clients."""
        matrix, layout = stack_deltas(updates)
        return unflatten(np.median(matrix, axis=0), layout)
