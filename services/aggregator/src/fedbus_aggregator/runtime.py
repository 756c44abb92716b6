"""What the handlers need, in one object: stores, model source, clock, per-round locks."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

from fedbus.aggregation import Model
from fedbus.events import utc_now
from fedbus.storage import ArtifactStore
from fedbus_aggregator.models import ModelSource
from fedbus_aggregator.store import RoundStore

__all__ = ["Deps", "GlobalCache", "RoundLocks"]

RoundKey = tuple[str, int]


class RoundLocks:
    """One asyncio lock per (job, round): the consumer and the deadline task never interleave
    on the same round inside this process (across processes, versions in the store decide)."""

    def __init__(self) -> None:
        self._locks: dict[RoundKey, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: RoundKey) -> AsyncIterator[None]:
        """Hold the lock of ``key`` (dropped from memory once nobody waits for it)."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class GlobalCache:
    """The last few rounds' global models, so each update is not checked against a fresh
    download of it."""

    def __init__(self, capacity: int = 4) -> None:
        self._models: OrderedDict[tuple[str, int, int], Model] = OrderedDict()
        self._capacity = capacity

    def get(self, key: tuple[str, int, int]) -> Model | None:
        """The cached model of (job, round, version), if any."""
        model = self._models.get(key)
        if model is not None:
            self._models.move_to_end(key)
        return model

    def put(self, key: tuple[str, int, int], model: Model) -> None:
        """Remember a model, evicting the least recently used beyond capacity."""
        self._models[key] = model
        self._models.move_to_end(key)
        while len(self._models) > self._capacity:
            self._models.popitem(last=False)


@dataclass
class Deps:
    """The aggregator's dependencies; tests pass fakes (in-memory stores, a fake model source).

    Attributes
    ----------
    store
        Round bookkeeping (PostgreSQL in production).
    artifacts
        Updates, global models and server optimizer state (MinIO in production).
    models
        Builds round 1's weights and evaluates new global models.
    source
        The ``source`` of emitted events.
    max_update_norm
        Optional bound on an update's L2 norm; larger ones are rejected.
    clock
        Current UTC time (tests move it past deadlines).
    """

    store: RoundStore
    artifacts: ArtifactStore
    models: ModelSource
    source: str = "aggregator"
    max_update_norm: float | None = None
    clock: Callable[[], datetime] = utc_now
    locks: RoundLocks = field(default_factory=RoundLocks)
    globals: GlobalCache = field(default_factory=GlobalCache)
