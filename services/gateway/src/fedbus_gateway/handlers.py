"""Event handlers: fold each job event into the read model, then fan it out to live streams."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fedbus.bus import Handler
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
    RoundStarted,
)
from fedbus.telemetry import log_context
from fedbus_gateway.fanout import JobEventHub
from fedbus_gateway.store import JobStore

__all__ = ["CONSUMED", "bind_handlers", "on_job_event", "on_progress"]

READ_MODEL_EVENTS: tuple[type[Event], ...] = (
    JobRequested,
    JobAccepted,
    JobRejected,
    JobCompleted,
    JobFailed,
    RoundStarted,
    RoundCompleted,
    BudgetUpdated,
)
CONSUMED: tuple[type[Event], ...] = (*READ_MODEL_EVENTS, Progress)
"""Every event type the gateway consumes (its topics)."""


async def on_job_event(event: Event, *, jobs: JobStore, hub: JobEventHub) -> Sequence[Event]:
    """Update the job's view, then pass the event to the job's live streams."""
    with log_context(job_id=event.job_id, event_type=event.type):
        await jobs.apply(event)
        hub.publish(event)
    return []


async def on_progress(event: Progress, *, hub: JobEventHub) -> Sequence[Event]:
    """Progress is not kept; live streams get it."""
    hub.publish(event)
    return []


def bind_handlers(*, jobs: JobStore, hub: JobEventHub) -> Mapping[type[Event], Handler]:
    """The routing table with the dependencies bound."""

    async def job_event(event: Event) -> Sequence[Event]:
        return await on_job_event(event, jobs=jobs, hub=hub)

    async def progress(event: Progress) -> Sequence[Event]:
        return await on_progress(event, hub=hub)

    table: dict[type[Event], Handler] = dict.fromkeys(READ_MODEL_EVENTS, job_event)
    table[Progress] = progress
    return table
