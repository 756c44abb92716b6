"""Event handlers: fold each job event into the read model, then fan it out to live streams."""

from __future__ import annotations

import logging

from fedbus.bus import Routes, route
from fedbus.events import (
    BudgetUpdated,
    Event,
    JobAccepted,
    JobCompleted,
    JobFailed,
    JobRejected,
    JobRequested,
    Progress,
    RoundCompleted,
    RoundDeclined,
    RoundStarted,
)
from fedbus.telemetry import log_context
from fedbus_gateway.deps import Deps
from fedbus_gateway.store import StoredEvent

__all__ = ["HANDLERS", "on_job_event", "on_progress", "on_round_declined"]

log = logging.getLogger(__name__)


async def on_job_event(event: Event, *, deps: Deps) -> list[Event]:
    """Record the event, update the job's view, then pass it to the job's live streams.

    Recorded before the view changes: a stream that sees an ended view finds the ending
    event in the record, so a resumed stream of an ended job is complete.
    """
    with log_context(job_id=event.job_id, event_type=event.type):
        if isinstance(event, JobRequested):
            known = await deps.jobs.get(event.job_id)
            if known is not None and known.tenant != event.tenant:
                # Another tenant's request under this job's id (outside producers pick their
                # ids): orchestration ignores it, and this job's stream does not show it.
                log.warning("job.requested of another tenant under a known job id; ignored")
                return []
        seq = await deps.jobs.record(event)
        await deps.jobs.apply(event)
        deps.hub.publish(StoredEvent(seq=seq, event=event))
    return []


async def on_progress(event: Progress, *, deps: Deps) -> list[Event]:
    """Progress changes no view: it is recorded for resumed streams, then streamed live.

    Progress of a job the gateway does not know is dropped: every trainer principal may write
    ``progress``, and nothing should fill the record under made-up job ids.
    """
    return await _stream_only(event, deps)


async def on_round_declined(event: RoundDeclined, *, deps: Deps) -> list[Event]:
    """A site's decline is shown in its job's stream like progress (the view does not change:
    orchestration's ``job.failed`` or next round says what it means for the job)."""
    return await _stream_only(event, deps)


async def _stream_only(event: Event, deps: Deps) -> list[Event]:
    if await deps.jobs.get(event.job_id) is None:
        return []
    seq = await deps.jobs.record(event)
    deps.hub.publish(StoredEvent(seq=seq, event=event))
    return []


HANDLERS = Routes[Deps](
    route(JobRequested, on_job_event),
    route(JobAccepted, on_job_event),
    route(JobRejected, on_job_event),
    route(JobCompleted, on_job_event),
    route(JobFailed, on_job_event),
    route(RoundStarted, on_job_event),
    route(RoundCompleted, on_job_event),
    route(BudgetUpdated, on_job_event),
    route(Progress, on_progress),
    route(RoundDeclined, on_round_declined),
)
"""The routing table: every event the gateway consumes (its topics) -> handler.

Every event is recorded in its job's event log (what a resumed ``/events`` stream replays);
the job events also fold into the read model (:func:`on_job_event` takes any event: the
view's ``apply`` knows each type).
"""
