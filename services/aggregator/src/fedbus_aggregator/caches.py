"""Per-process state the handlers share: per-round locks, recent global models, judged updates.

None of it is durable: after a restart the store and the artifacts rebuild what is needed.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fedbus.aggregation import Model
from fedbus.events import ModelRef

__all__ = ["GlobalCache", "RoundKey", "RoundLocks", "UpdateCache"]

RoundKey = tuple[str, int]
"""(job id, round)."""


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
    download of it; and the last few this process wrote, by reference, so the round they
    start does not download them at all."""

    def __init__(self, capacity: int = 4) -> None:
        self._models: OrderedDict[tuple[str, int, int], Model] = OrderedDict()
        self._written: OrderedDict[tuple[str, str], Model] = OrderedDict()
        self._capacity = capacity

    def remember_written(self, ref: ModelRef, model: Model) -> None:
        """Keep ``model``, just stored as ``ref`` (made read-only: it must stay those bytes).

        Kept until the round it starts asks for it (:meth:`written`), or pushed out by the
        ``capacity`` newer ones.
        """
        for array in model.values():
            array.setflags(write=False)
        self._written[(ref.object_key, ref.sha256)] = model
        while len(self._written) > self._capacity:
            self._written.popitem(last=False)

    def written(self, ref: ModelRef) -> Model | None:
        """The model this process stored as ``ref``, handed over once (the caller caches it
        under its round), or None when it is not kept."""
        return self._written.pop((ref.object_key, ref.sha256), None)

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


class UpdateCache:
    """Accepted updates, as judged, until their round combines them (up to a byte budget).

    Judging an update downloads it, checks its size and SHA-256 against the reference and
    validates its tensors; combining the round would download it again. Kept here, the very
    arrays that were checked are combined (made read-only, so nothing changes them in
    between). Past ``max_bytes`` the least recently judged are dropped and downloaded (and
    verified) again when the round closes, as after a restart.

    Parameters
    ----------
    max_bytes
        Budget for the arrays held; 0 keeps nothing.
    """

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        self._updates: OrderedDict[tuple[str, str], Model] = OrderedDict()
        self._max_bytes = max_bytes
        self.nbytes = 0

    def put(self, ref: ModelRef, tensors: Model) -> None:
        """Keep the judged ``tensors`` of ``ref`` (nothing if they alone exceed the budget)."""
        size = sum(a.nbytes for a in tensors.values())
        self.discard(ref)
        if size > self._max_bytes:
            return
        for array in tensors.values():
            array.setflags(write=False)
        self._updates[(ref.object_key, ref.sha256)] = tensors
        self.nbytes += size
        while self.nbytes > self._max_bytes:
            _, dropped = self._updates.popitem(last=False)
            self.nbytes -= sum(a.nbytes for a in dropped.values())

    def take(self, ref: ModelRef) -> Model | None:
        """The kept tensors of ``ref``, forgotten here; None when they are not kept."""
        tensors = self._updates.pop((ref.object_key, ref.sha256), None)
        if tensors is not None:
            self.nbytes -= sum(a.nbytes for a in tensors.values())
        return tensors

    def discard(self, ref: ModelRef) -> None:
        """Forget ``ref``'s tensors if kept."""
        self.take(ref)
