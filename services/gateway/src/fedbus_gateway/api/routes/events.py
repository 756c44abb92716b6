"""``GET /v1/jobs/{id}/events``: a job's progress as Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from sse_starlette import EventSourceResponse

from fedbus.events import encode
from fedbus_gateway.api.deps import Gateway, get_gateway, owned_job, require
from fedbus_gateway.api.params import JobId
from fedbus_gateway.api.schemas import AUTH_ERRORS, INVALID, NOT_FOUND
from fedbus_gateway.auth import Principal
from fedbus_gateway.settings import Scope
from fedbus_gateway.store import JobStore, StoredEvent

__all__ = ["ENDING_EVENTS", "router"]

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

ENDING_EVENTS = frozenset({"job.completed", "job.failed", "job.rejected"})
"""After one of these the stream closes."""

_STREAM_DOC = (
    "A `text/event-stream`. First one `status` event without an `id` (`data`: the job as "
    "`GET /v1/jobs/{id}` returns it), then every `progress`, `round.started`, "
    "`round.completed`, `budget.updated` and `job.*` event of the job as it happens (`event`: "
    "the event type, `data`: the event JSON, `id`: the event's sequence number in the "
    "gateway, growing along the job's events). The stream ends after `job.completed`, "
    "`job.failed` or `job.rejected`, or at once when the job had already ended.\n\n"
    "**Resuming.** A client that reconnects with the standard `Last-Event-ID` header (the "
    "`id` of the last event it got; EventSource sends it by itself) gets the `status` event, "
    "then every event of the job after that id from the gateway's record, then the live "
    "ones: none twice, none missed. `Last-Event-ID: 0` replays the job's whole record. "
    "A `Last-Event-ID` that is not a whole number is refused with 422 naming the header."
)

PAGE = 500
"""Recorded events read per query while catching a resumed stream up."""


@router.get(
    "/{job_id}/events",
    summary="Follow a job live (Server-Sent Events)",
    response_class=EventSourceResponse,
    responses={
        200: {"description": _STREAM_DOC, "content": {"text/event-stream": {}}},
        **AUTH_ERRORS,
        **NOT_FOUND,
        **INVALID,
    },
)
async def job_events(
    job_id: JobId,
    gateway: Annotated[Gateway, Depends(get_gateway)],
    principal: Annotated[Principal, Depends(require(Scope.JOBS_READ))],
    last_event_id: Annotated[
        int | None,
        Header(
            alias="Last-Event-ID",
            ge=0,
            le=2**63 - 1,
            description="Resume after this event `id` (sent by EventSource on reconnect).",
        ),
    ] = None,
) -> EventSourceResponse:
    """Stream the job's events until it ends, resuming after ``Last-Event-ID``."""
    await owned_job(gateway, principal, job_id)
    return EventSourceResponse(_stream(gateway, job_id, last_event_id), ping=gateway.sse_ping_s)


async def _stream(
    gateway: Gateway, job_id: str, last_event_id: int | None
) -> AsyncIterator[dict[str, Any]]:
    # Subscribe before reading the status and the record, so nothing in between is lost;
    # live events already sent from the record (seq <= last) are skipped, as are redeliveries.
    with gateway.hub.subscribe(job_id) as queue:
        view = await gateway.jobs.get(job_id)
        if view is None:
            return
        # No id: the client's last id stays that of the last real event, so resuming works.
        yield {"event": "status", "data": view.model_dump_json()}
        last = 0
        if last_event_id is not None:
            last = last_event_id
            async for stored in _recorded(gateway.jobs, job_id, after=last_event_id):
                yield _frame(stored)
                last = stored.seq
                if stored.event.type in ENDING_EVENTS:
                    return
        if view.ended:  # its ending event was recorded before the view ended
            return
        while (live := await queue.get()) is not None:  # None: dropped as too slow
            if live.seq <= last:
                continue
            yield _frame(live)
            last = live.seq
            if live.event.type in ENDING_EVENTS:
                return


async def _recorded(jobs: JobStore, job_id: str, *, after: int) -> AsyncIterator[StoredEvent]:
    while True:
        page = await jobs.events_after(job_id, after=after, limit=PAGE)
        for stored in page:
            yield stored
        if len(page) < PAGE:
            return
        after = page[-1].seq


def _frame(stored: StoredEvent) -> dict[str, Any]:
    event = stored.event
    return {"event": event.type, "data": encode(event).decode(), "id": str(stored.seq)}
