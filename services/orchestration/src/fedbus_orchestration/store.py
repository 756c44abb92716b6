"""The storage port of orchestration: jobs, trainers and the events each change emitted.

Every state change is saved with the events it emits, keyed by the id of its cause (the
consumed event's id, or a deadline key), in one transaction. A redelivered cause finds its
events and re-emits them unchanged (same event ids), so a crash between the database commit
and the Kafka acknowledgement neither loses nor doubles anything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from fedbus.errors import RetryableError
from fedbus.events import Event
from fedbus_orchestration.lifetime import ClientSpend
from fedbus_orchestration.selection import TrainerInfo
from fedbus_orchestration.state import Job

__all__ = ["ConcurrentUpdateError", "JobStore", "PublishFn", "newer_spend", "newest"]

PublishFn = Callable[[list[Event]], Awaitable[None]]


class ConcurrentUpdateError(RetryableError):
    """The job changed since it was read (another handler, the watcher, another instance)."""


class JobStore(Protocol):
    """Jobs, trainers and emitted events; implemented in memory and in PostgreSQL."""

    async def get(self, job_id: str) -> Job | None:
        """The job, or None."""

    async def find_by_idempotency_key(self, tenant: str, key: str) -> Job | None:
        """The tenant's job requested with ``key``, or None."""

    async def emitted(self, cause_id: str) -> list[Event] | None:
        """The events recorded for ``cause_id``, or None when it was never handled."""

    async def record(
        self,
        *,
        cause_id: str,
        events: Sequence[Event],
        job: Job | None = None,
        published: bool = True,
    ) -> None:
        """Save ``job`` (if any) and ``events`` under ``cause_id``, atomically.

        A job with ``version`` 0 is inserted; otherwise it replaces the stored job only if the
        stored version is still ``job.version`` (then the version goes up by one).
        ``published=False`` leaves the events to :meth:`publish_pending`.

        Raises
        ------
        ConcurrentUpdateError
            The job id or idempotency key exists already, or the version moved on.
        """

    async def running(self) -> list[Job]:
        """Every job whose round or budget wait has a deadline (running, awaiting_budget)."""

    async def publish_pending(self, publish: PublishFn) -> int:
        """Publish events recorded with ``published=False``, oldest first; returns how many."""

    async def save_trainer(self, trainer: TrainerInfo) -> None:
        """Store a heartbeat, unless a newer one of the same trainer is stored already."""

    async def trainers(self, dataset: str) -> list[TrainerInfo]:
        """Every trainer whose latest heartbeat lists ``dataset`` (freshness: the caller's)."""

    async def save_client_spend(self, spend: ClientSpend) -> None:
        """Store a client's lifetime spend on a dataset, unless one with more entries is stored."""

    async def client_spends(self, dataset: str) -> dict[str, ClientSpend]:
        """The latest lifetime spend on ``dataset`` of every client the accountant announced."""


def newer_spend(stored: ClientSpend | None, new: ClientSpend) -> ClientSpend:
    """The lifetime spend to keep: the ledger only grows, so more entries is newer."""
    if stored is not None and stored.entries >= new.entries:
        return stored
    return new


def newest(stored: TrainerInfo | None, new: TrainerInfo) -> TrainerInfo:
    """The heartbeat to keep: out-of-order deliveries never move ``last_seen`` back."""
    if stored is not None and stored.last_seen > new.last_seen:
        return stored
    return new
