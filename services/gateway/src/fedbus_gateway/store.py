"""The read-model port: where job views live (PostgreSQL in production, a fake in tests)."""

from __future__ import annotations

from typing import Protocol

from fedbus.events import Event
from fedbus_gateway.jobs import JobView, ViewStatus

__all__ = ["JobStore"]


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
