"""An in-memory job store with the PostgreSQL store's behaviour (unit tests, demos)."""

from __future__ import annotations

from fedbus.events import Event
from fedbus_gateway.jobs import JobView, ViewStatus, apply

__all__ = ["InMemoryJobStore"]


class InMemoryJobStore:
    """Job views in a dict; see :class:`fedbus_gateway.store.JobStore`."""

    def __init__(self) -> None:
        self.jobs: dict[str, JobView] = {}

    async def claim(self, view: JobView) -> JobView:
        """See :class:`~fedbus_gateway.store.JobStore`."""
        if view.job_id in self.jobs:
            return self.jobs[view.job_id]
        if view.idempotency_key is not None:
            for job in self.jobs.values():
                if (job.tenant, job.idempotency_key) == (view.tenant, view.idempotency_key):
                    return job
        self.jobs[view.job_id] = view
        return view

    async def forget(self, job_id: str) -> None:
        """See :class:`~fedbus_gateway.store.JobStore`."""
        self.jobs.pop(job_id, None)

    async def get(self, job_id: str) -> JobView | None:
        """See :class:`~fedbus_gateway.store.JobStore`."""
        return self.jobs.get(job_id)

    async def list(
        self, tenant: str, *, status: ViewStatus | None = None, limit: int = 100
    ) -> list[JobView]:
        """See :class:`~fedbus_gateway.store.JobStore`."""
        mine = [j for j in self.jobs.values() if j.tenant == tenant and status in (None, j.status)]
        mine.sort(key=lambda j: (j.created_at, j.job_id), reverse=True)
        return mine[:limit]

    async def apply(self, event: Event) -> JobView | None:
        """See :class:`~fedbus_gateway.store.JobStore`."""
        view = apply(self.jobs.get(event.job_id), event)
        if view is not None:
            self.jobs[event.job_id] = self._keep_key_unique(view)
        return view

    def _keep_key_unique(self, view: JobView) -> JobView:
        # Like the unique index in PostgreSQL: a reused key stays with the job that has it.
        for job in self.jobs.values():
            same_key = (job.tenant, job.idempotency_key) == (view.tenant, view.idempotency_key)
            if job.job_id != view.job_id and view.idempotency_key is not None and same_key:
                return view.model_copy(update={"idempotency_key": None})
        return view
