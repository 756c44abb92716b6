"""Fakes for tests of the aggregator's handlers (and of code that drives them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from fedbus.aggregation import Model, NamedArrays
from fedbus.storage import InMemoryArtifactStore

__all__ = ["T0", "CountingStore", "FakeModels", "ManualClock", "constant_delta"]

T0 = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
"""A fixed start time."""


class FakeModels:
    """A two-tensor model source without torch.

    Round 1's weights are drawn from ``seed``; every evaluation scores accuracy 0.75 and
    loss 0.5 and is remembered in ``evaluated``. The dataset ``unknown`` has no shape.
    """

    def __init__(self) -> None:
        self.evaluated: list[NamedArrays] = []

    def initial_weights(self, *, model: str, dataset: str, seed: int) -> Model | None:
        """Seeded ``w`` (2x3) and zero ``b`` (3), float32; None for dataset ``unknown``."""
        if dataset == "unknown":
            return None
        rng = np.random.default_rng(seed)
        return {
            "w": rng.standard_normal((2, 3)).astype(np.float32),
            "b": np.zeros(3, dtype=np.float32),
        }

    def evaluate(self, *, model: str, dataset: str, weights: NamedArrays) -> dict[str, float]:
        """Fixed scores; remembers the weights."""
        self.evaluated.append(dict(weights))
        return {"accuracy": 0.75, "loss": 0.5}


class CountingStore(InMemoryArtifactStore):
    """The in-memory artifact store, counting the reads of each object."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: dict[str, int] = {}

    async def _get(self, key: str) -> bytes:
        self.reads[key] = self.reads.get(key, 0) + 1
        return await super()._get(key)


class ManualClock:
    """A UTC clock that moves only when told."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        """The current fake time."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += timedelta(seconds=seconds)


def constant_delta(value: float, *, shape_w: tuple[int, ...] = (2, 3)) -> Model:
    """A delta for :class:`FakeModels`' layout with every coordinate ``value``."""
    return {
        "w": np.full(shape_w, value, dtype=np.float32),
        "b": np.full(3, value, dtype=np.float32),
    }
