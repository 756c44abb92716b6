"""The read-model port: where job views live (PostgreSQL in production, a fake in tests)."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Protocol

from fedbus.events import Event
from fedbus_gateway.jobs import JobView, ViewStatus

__all__ = ["JobStore", "StoredEvent"]


@dataclass(frozen=True)
class StoredEvent:
    """A job's event as the gateway keeps it: its sequence number and the event.

    ``seq`` grows with every event the gateway records (across all jobs, with gaps); it is
    the SSE ``id`` of the event, so a stream resumes after it with ``Last-Event-ID``.
    """

    seq: int
    event: Event


class JobStore(Protocol):
    """Job views by id, per tenant, folded from events."""

    async def claim(self, view: JobView) -> JobView:
        """Store a newly requested job and return it.

        When the tenant already used ``view.idempotency_key`` (or the job id exists), nothing
        is stored and the existing job is returned instead.
        """

    async def forget(self, job_id: str) -> None:
        """Remove a job whose request could not be published."""

    async def get(self, job_id: str) -> JobView | None:
        """The job, or None."""

    async def list(
        self, tenant: str, *, status: ViewStatus | None = None, limit: int = 100
    ) -> list[JobView]:
        """A tenant's jobs, newest first, optionally of one status."""

    async def apply(self, event: Event) -> JobView | None:
        """Fold ``event`` into its job's view; returns the view (None for an unknown job)."""

    async def record(self, event: Event) -> int:
        """Keep ``event`` in its job's event log and return its sequence number.

        The same ``event_id`` recorded again (a redelivery, another gateway replica) is
        kept once and gets the sequence number it got the first time.
        """

    async def events_after(
        self, job_id: str, *, after: int, limit: int = 500
    ) -> builtins.list[StoredEvent]:
        """Up to ``limit`` of ``job_id``'s recorded events with ``seq > after``, by ``seq``."""
