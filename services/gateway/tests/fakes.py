"""In-memory fakes of the gateway's ports, for its unit tests (never shipped in the wheel)."""

from __future__ import annotations

import builtins
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from fedbus.events import Event
from fedbus_gateway.jobs import JobView, ViewStatus, apply
from fedbus_gateway.store import StoredEvent

__all__ = ["FakeClock", "FakeJobStore", "FakeRegistry"]


class FakeJobStore:
    """Job views in a dict, with the PostgreSQL store's behaviour.

    See :class:`~fedbus_gateway.store.JobStore`.
    """

    def __init__(self) -> None:
        self.jobs: dict[str, JobView] = {}
        self.events: list[StoredEvent] = []
        self._seqs: dict[str, int] = {}

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

    async def record(self, event: Event) -> int:
        """See :class:`~fedbus_gateway.store.JobStore`."""
        if event.event_id not in self._seqs:
            # Like a bigserial: numbers grow across jobs; a redelivery keeps its first one.
            self._seqs[event.event_id] = seq = len(self.events) + 1
            self.events.append(StoredEvent(seq=seq, event=event))
        return self._seqs[event.event_id]

    async def events_after(
        self, job_id: str, *, after: int, limit: int = 500
    ) -> builtins.list[StoredEvent]:
        """See :class:`~fedbus_gateway.store.JobStore`."""
        mine = [e for e in self.events if e.event.job_id == job_id and e.seq > after]
        return mine[:limit]

    def _keep_key_unique(self, view: JobView) -> JobView:
        # Like the unique index in PostgreSQL: a reused key stays with the job that has it.
        for job in self.jobs.values():
            same_key = (job.tenant, job.idempotency_key) == (view.tenant, view.idempotency_key)
            if job.job_id != view.job_id and view.idempotency_key is not None and same_key:
                return view.model_copy(update={"idempotency_key": None})
        return view


@dataclass
class FakeClock:
    """A monotonic clock the test moves by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeRegistry:
    """The registry's read API behind an httpx MockTransport; records what it was asked."""

    models: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    down: bool = False
    artifacts: dict[tuple[str, str, int], tuple[bytes, str, str]] = field(default_factory=dict)
    """(tenant, name, version) -> (weights, the job's model, its dataset) for ``.../artifact``."""
    model_options: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)
    """The job's ``model_options`` of a version (none: the header is not sent)."""

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        tenant = request.url.params.get("tenant", "")
        parts = request.url.path.strip("/").split("/")  # v1 models [name versions [v]]
        if len(parts) == 2:
            names = sorted({n for t, n in self.models if t == tenant})
            return httpx.Response(200, json={"models": [{"name": n} for n in names]})
        versions = self.models.get((tenant, parts[2]))
        if versions is None:
            return httpx.Response(404, json={"detail": f"no model '{parts[2]}'"})
        if len(parts) == 4:
            return httpx.Response(200, json={"versions": versions})
        match = [v for v in versions if v["version"] == int(parts[4])]
        if not match:
            return httpx.Response(404, json={"detail": f"no version {parts[4]}"})
        if len(parts) == 6 and parts[5] == "artifact":
            return self._artifact(tenant, parts[2], int(parts[4]))
        return httpx.Response(200, json=match[0])

    def _artifact(self, tenant: str, name: str, version: int) -> httpx.Response:
        found = self.artifacts.get((tenant, name, version))
        if found is None:
            return httpx.Response(404, json={"detail": "no artifact"})
        data, model, dataset = found
        headers = {"X-Fedbus-Sha256": hashlib.sha256(data).hexdigest(),
                   "X-Fedbus-Model": model, "X-Fedbus-Dataset": dataset}  # fmt: skip
        options = self.model_options.get((tenant, name, version))
        if options is not None:
            headers["X-Fedbus-Model-Options"] = quote(json.dumps(options), safe="")
        return httpx.Response(200, content=data, headers=headers)
