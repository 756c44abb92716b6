"""Krum and Multi-Krum.

Blanchard, El Mhamdi, Guerraoui and Stainer (2017), "Machine Learning with
Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS. Each update is scored by
the sum of squared distances to its ``n - f - 2`` nearest other updates; Krum picks
the update with the lowest score, Multi-Krum averages the ``m`` lowest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedbus.aggregation.errors import IncompatibleUpdateError
from fedbus.aggregation.helpers import stack_deltas, unflatten
from fedbus.aggregation.strategy import Strategy
from fedbus.aggregation.updates import ClientUpdate, FloatArray, Model

__all__ = ["Krum", "MultiKrum", "krum_scores"]


def krum_scores(matrix: FloatArray, *, num_byzantine: int) -> FloatArray:
    """Krum score of each row: summed squared distances to its n - f - 2 nearest rows.

    Raises
    ------
    IncompatibleUpdateError
        Unless ``n >= 2 f + 3``, the condition of Blanchard et al.
    """
    n = matrix.shape[0]
    if num_byzantine < 0 or n < 2 * num_byzantine + 3:
        raise IncompatibleUpdateError(f"Krum needs n >= 2f + 3, got n={n}, f={num_byzantine}")
    rows = matrix.astype(np.float64)
    squared = np.einsum("ij,ij->i", rows, rows)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2.0 * rows @ rows.T, 0.0)
    np.fill_diagonal(distances, np.inf)
    nearest = np.sort(distances, axis=1)[:, : n - num_byzantine - 2]
    return np.asarray(nearest.sum(axis=1))


class Krum(Strategy):
    """Multi-Krum; with ``num_selected=1`` (the default), Krum itself.

    Sample counts are ignored: the selected deltas are averaged without weights.

    Parameters
    ----------
    num_byzantine
        f, the number of Byzantine clients to tolerate (n must be >= 2f + 3).
    num_selected
        m, how many lowest-scored updates to average.
    """

    def __init__(self, *, num_byzantine: int, num_selected: int = 1) -> None:
        if num_byzantine < 0 or num_selected < 1:
            raise IncompatibleUpdateError("need num_byzantine >= 0 and num_selected >= 1")
        self.num_byzantine, self.num_selected = num_byzantine, num_selected
        self.last_selected: tuple[str, ...] = ()

    def combine(self, updates: Sequence[ClientUpdate]) -> Model:
        """Mean of the ``num_selected`` updates with the lowest Krum scores."""
        if self.num_selected > len(updates):
            raise IncompatibleUpdateError("num_selected exceeds the number of updates")
        # One row order whatever the arrival order: the scores' sums and the mean are
        # then the same bytes, and ties fall to the same client.
        updates = sorted(updates, key=lambda update: update.client_id)
        matrix, layout = stack_deltas(updates)
        scores = krum_scores(matrix, num_byzantine=self.num_byzantine)
        chosen = np.argsort(scores, kind="stable")[: self.num_selected]
        self.last_selected = tuple(updates[int(i)].client_id for i in chosen)
        return unflatten(matrix[chosen].mean(axis=0), layout)


class MultiKrum(Krum):
    """Multi-Krum: the mean of the ``num_selected`` lowest-scored updates."""

    def __init__(self, *, num_byzantine: int, num_selected: int) -> None:
        super().__init__(num_byzantine=num_byzantine, num_selected=num_selected)
