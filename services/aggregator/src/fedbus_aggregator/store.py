"""The round-store port, and an in-memory implementation for tests and single-process runs.

The PostgreSQL adapter (:mod:`fedbus_aggregator.adapters.postgres`) implements the same
port; one contract test runs against both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from datetime import datetime

from fedbus.events import ModelRef, RoundCompleted
from fedbus_aggregator.rounds import RoundState, RoundStatus, UpdateRecord

__all__ = ["InMemoryRoundStore", "RoundStore"]


class RoundStore(ABC):
    """Rounds keyed by (job_id, round) and their updates keyed by client id."""

    @abstractmethod
    async def get(self, job_id: str, round_: int) -> RoundState | None:
        """The round with its updates, or None when its ``round.started`` was not seen."""

    @abstractmethod
    async def updates(self, job_id: str, round_: int) -> dict[str, UpdateRecord]:
        """Every recorded update of a round, even one whose round is not open yet."""

    @abstractmethod
    async def save_started(self, state: RoundState) -> None:
        """Write a newly opened or restarted round; forget updates ``state`` does not hold."""

    @abstractmethod
    async def record_update(self, job_id: str, round_: int, record: UpdateRecord) -> None:
        """Record (or overwrite) one client's update."""

    @abstractmethod
    async def close(
        self,
        state: RoundState,
        *,
        status: RoundStatus,
        result: RoundCompleted | None = None,
        server_state: ModelRef | None = None,
        published: bool = False,
    ) -> bool:
        """Move an open round to ``status`` atomically with its result and server state.

        Applies only while the stored round is open at ``state.version``; returns whether
        it did (False: another decision or a newer ``round.started`` came first).
        """

    @abstractmethod
    async def mark_published(self, job_id: str, round_: int) -> None:
        """Remember that the round's ``round.completed`` was acknowledged by the broker."""

    @abstractmethod
    async def due(self, now: datetime) -> list[tuple[str, int]]:
        """Open rounds past their deadline and aggregated rounds not yet published."""

    @abstractmethod
    async def previous_server_state(self, job_id: str, round_: int) -> ModelRef | None:
        """The server optimizer state of the job's latest aggregated round before ``round_``."""


class InMemoryRoundStore(RoundStore):
    """Dictionaries with the same semantics as the PostgreSQL store; lost on exit."""

    def __init__(self) -> None:
        self._rounds: dict[tuple[str, int], RoundState] = {}
        self._updates: dict[tuple[str, int], dict[str, UpdateRecord]] = {}

    async def get(self, job_id: str, round_: int) -> RoundState | None:
        """See :class:`RoundStore`."""
        state = self._rounds.get((job_id, round_))
        if state is None:
            return None
        return replace(state, updates=dict(self._updates.get((job_id, round_), {})))

    async def updates(self, job_id: str, round_: int) -> dict[str, UpdateRecord]:
        """See :class:`RoundStore`."""
        return dict(self._updates.get((job_id, round_), {}))

    async def save_started(self, state: RoundState) -> None:
        """See :class:`RoundStore`."""
        key = (state.job_id, state.round)
        self._rounds[key] = replace(state, updates={})
        self._updates[key] = dict(state.updates)

    async def record_update(self, job_id: str, round_: int, record: UpdateRecord) -> None:
        """See :class:`RoundStore`."""
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
        """See :class:`RoundStore`."""
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
        """See :class:`RoundStore`."""
        key = (job_id, round_)
        if key in self._rounds:
            self._rounds[key] = replace(self._rounds[key], published=True)

    async def due(self, now: datetime) -> list[tuple[str, int]]:
        """See :class:`RoundStore`."""
        return sorted(
            key
            for key, s in self._rounds.items()
            if (s.status is RoundStatus.OPEN and s.deadline <= now)
            or (s.status is RoundStatus.AGGREGATED and not s.published)
        )

    async def previous_server_state(self, job_id: str, round_: int) -> ModelRef | None:
        """See :class:`RoundStore`."""
        earlier = [
            s
            for (job, r), s in self._rounds.items()
            if job == job_id and r < round_ and s.status is RoundStatus.AGGREGATED
        ]
        if not earlier:
            return None
        return max(earlier, key=lambda s: s.round).server_state
