"""The round-store port: what the handlers need from the aggregator's storage.

The PostgreSQL adapter (:mod:`fedbus_aggregator.adapters.postgres`) implements it, and so
does the tests' in-memory fake; one contract test runs against both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from fedbus.events import ModelRef, RoundCompleted
from fedbus_aggregator.rounds import RoundState, RoundStatus, UpdateRecord

__all__ = ["RoundStore"]


class RoundStore(Protocol):
    """Rounds keyed by (job_id, round) and their updates keyed by client id."""

    async def get(self, job_id: str, round_: int) -> RoundState | None:
        """The round with its updates, or None when its ``round.started`` was not seen."""

    async def updates(self, job_id: str, round_: int) -> dict[str, UpdateRecord]:
        """Every recorded update of a round, even one whose round is not open yet."""

    async def save_started(self, state: RoundState) -> None:
        """Write a newly opened or restarted round; forget updates ``state`` does not hold."""

    async def record_update(self, job_id: str, round_: int, record: UpdateRecord) -> None:
        """Record (or overwrite) one client's update."""

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

    async def mark_published(self, job_id: str, round_: int) -> None:
        """Remember that the round's ``round.completed`` was acknowledged by the broker."""

    async def due(self, now: datetime) -> list[tuple[str, int]]:
        """Open rounds past their deadline and aggregated rounds not yet published."""

    async def previous_server_state(self, job_id: str, round_: int) -> ModelRef | None:
        """The server optimizer state of the job's latest aggregated round before ``round_``."""
