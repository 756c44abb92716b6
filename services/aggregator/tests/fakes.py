"""Fakes for the aggregator's unit tests (never shipped in the wheel).

The in-memory round store, a torch-free model source, an artifact store that counts its
reads, a clock that moves only when told, and update factories.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from fedbus.aggregation import Model, NamedArrays
from fedbus.events import BaseModelRef, LoraSpec, ModelRef, RoundCompleted
from fedbus.storage import InMemoryArtifactStore
from fedbus_aggregator.rounds import RoundState, RoundStatus, UpdateRecord

Options = Mapping[str, Any]

__all__ = [
    "T0",
    "CountingStore",
    "FakeModels",
    "FakeRoundStore",
    "ManualClock",
    "constant_delta",
]

T0 = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
"""A fixed start time."""


class FakeModels:
    """A two-tensor model source without torch.

    Round 1's weights are drawn from ``seed``; every evaluation scores accuracy 0.75 and
    loss 0.5 and is remembered in ``evaluated``. The dataset ``unknown`` has no shape.
    """

    def __init__(self) -> None:
        self.evaluated: list[NamedArrays] = []
        self.options: list[tuple[str, dict[str, Any]]] = []
        self.loras: list[tuple[str, LoraSpec]] = []

    def initial_weights(
        self,
        *,
        model: str,
        dataset: str,
        seed: int,
        model_options: Options | None = None,
        lora: LoraSpec | None = None,
    ) -> Model | None:
        """Seeded ``w`` (2x3) and zero ``b`` (3), float32; None for dataset ``unknown``."""
        self.options.append(("initial_weights", dict(model_options or {})))
        if lora is not None:
            self.loras.append(("initial_weights", lora))
        if dataset == "unknown":
            return None
        rng = np.random.default_rng(seed)
        return {
            "w": rng.standard_normal((2, 3)).astype(np.float32),
            "b": np.zeros(3, dtype=np.float32),
        }

    def evaluate(
        self,
        *,
        model: str,
        dataset: str,
        weights: NamedArrays,
        model_options: Options | None = None,
        lora: LoraSpec | None = None,
    ) -> dict[str, float]:
        """Fixed scores; remembers the weights."""
        self.options.append(("evaluate", dict(model_options or {})))
        if lora is not None:
            self.loras.append(("evaluate", lora))
        self.evaluated.append(dict(weights))
        return {"accuracy": 0.75, "loss": 0.5}

    def base_model(
        self,
        *,
        model: str,
        dataset: str,
        seed: int,
        lora: LoraSpec,
        model_options: Options | None = None,
    ) -> BaseModelRef | None:
        """A fixed digest per model name; None for dataset ``unknown``."""
        if dataset == "unknown":
            return None
        return BaseModelRef(name=model, sha256=hashlib.sha256(model.encode()).hexdigest())


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


class FakeRoundStore:
    """Dictionaries with the same semantics as the PostgreSQL store; nothing persisted."""

    def __init__(self) -> None:
        self._rounds: dict[tuple[str, int], RoundState] = {}
        self._updates: dict[tuple[str, int], dict[str, UpdateRecord]] = {}

    async def get(self, job_id: str, round_: int) -> RoundState | None:
        """See :class:`~fedbus_aggregator.store.RoundStore`."""
        state = self._rounds.get((job_id, round_))
        if state is None:
            return None
        return replace(state, updates=dict(self._updates.get((job_id, round_), {})))

    async def updates(self, job_id: str, round_: int) -> dict[str, UpdateRecord]:
        """See :class:`~fedbus_aggregator.store.RoundStore`."""
        return dict(self._updates.get((job_id, round_), {}))

    async def save_started(self, state: RoundState) -> None:
        """See :class:`~fedbus_aggregator.store.RoundStore`."""
        key = (state.job_id, state.round)
        self._rounds[key] = replace(state, updates={})
        self._updates[key] = dict(state.updates)

    async def record_update(self, job_id: str, round_: int, record: UpdateRecord) -> None:
        """See :class:`~fedbus_aggregator.store.RoundStore`."""
        self._updates.setdefault((job_id, round_), {})[record.client_id] = record

    async def close(
        self,
        state: RoundState,
        *,
        status: RoundStatus,
        result: RoundCompleted | None = None,
        server_state: ModelRef | None = None,
        published: bool = False,
    ) -> bool:
        """See :class:`~fedbus_aggregator.store.RoundStore`."""
        key = (state.job_id, state.round)
        stored = self._rounds.get(key)
        if stored is None or stored.status is not RoundStatus.OPEN:
            return False
        if stored.version != state.version:
            return False
        self._rounds[key] = replace(
            stored, status=status, result=result, server_state=server_state, published=published
        )
        return True

    async def mark_published(self, job_id: str, round_: int) -> None:
        """See :class:`~fedbus_aggregator.store.RoundStore`."""
        key = (job_id, round_)
        if key in self._rounds:
            self._rounds[key] = replace(self._rounds[key], published=True)

    async def due(self, now: datetime) -> list[tuple[str, int]]:
        """See :class:`~fedbus_aggregator.store.RoundStore`."""
        return sorted(
            key
            for key, s in self._rounds.items()
            if (s.status is RoundStatus.OPEN and s.deadline <= now)
            or (s.status is RoundStatus.AGGREGATED and not s.published)
        )

    async def previous_server_state(self, job_id: str, round_: int) -> ModelRef | None:
        """See :class:`~fedbus_aggregator.store.RoundStore`."""
        earlier = [
            s
            for (job, r), s in self._rounds.items()
            if job == job_id and r < round_ and s.status is RoundStatus.AGGREGATED
        ]
        if not earlier:
            return None
        return max(earlier, key=lambda s: s.round).server_state
