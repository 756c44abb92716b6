"""``GET /v1/jobs/{id}/events``: a job's progress as Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from sse_starlette import EventSourceResponse

from fedbus.events import encode
from fedbus_gateway.api.deps import Gateway, get_gateway, owned_job, require
from fedbus_gateway.api.schemas import AUTH_ERRORS, NOT_FOUND
from fedbus_gateway.auth import Principal
from fedbus_gateway.settings import Scope

__all__ = ["ENDING_EVENTS", "router"]

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

ENDING_EVENTS = frozenset({"job.completed", "job.failed", "job.rejected"})
"""After one of these the stream closes."""

_STREAM_DOC = (
    "A `text/event-stream`. First one `status` event (`data`: the job as `GET /v1/jobs/{id}` "
    "returns it), then every `progress`, `round.started`, `round.completed` and `job.*` event "
    "of the job as it happens (`event`: the event type, `data`: the event JSON). The stream "
    "ends after `job.completed`, `job.failed` or `job.rejected`, or at once when the job had "
    "already ended."
)


@router.get(
    "/{job_id}/events",
    summary="Follow a job live (Server-Sent Events)",
    response_class=EventSourceResponse,
    responses={
        200: {"description": _STREAM_DOC, "content": {"text/event-stream": {}}},
        **AUTH_ERRORS,
        **NOT_FOUND,
    },
)
async def job_events(
    job_id: str,
    gateway: Annotated[Gateway, Depends(get_gateway)],
    principal: Annotated[Principal, Depends(require(Scope.JOBS_READ))],
) -> EventSourceResponse:
    """Stream the job's events until it ends."""
    await owned_job(gateway, principal, job_id)
    return EventSourceResponse(_stream(gateway, job_id), ping=gateway.sse_ping_s)


async def _stream(gateway: Gateway, job_id: str) -> AsyncIterator[dict[str, Any]]:
    # Subscribe before reading the status, so nothing between the two is lost.
    with gateway.hub.subscribe(job_id) as queue:
        view = await gateway.jobs.get(job_id)
        if view is None:
            return
        yield {"event": "status", "data": view.model_dump_json(), "id": "status"}
        if view.ended:
            return
        while True:
            event = await queue.get()
            if event is None:  # dropped as too slow: the client reconnects and resyncs
                return
            yield {"event": event.type, "data": encode(event).decode(), "id": event.event_id}
            if event.type in ENDING_EVENTS:
                return
