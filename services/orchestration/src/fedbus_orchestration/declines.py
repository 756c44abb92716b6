"""Sites that decline a job: who, until when, and how a decline reads. Pure, no I/O.

A trainer whose site policy refuses a round publishes ``round.declined``. Orchestration keeps,
per job, each declining client and until when it declines (``None``: for the rest of the job,
when the model or the privacy asked for is refused; a time: when its daily round limit frees a
slot), and leaves those clients out of the job's selections while the decline holds.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from fedbus.events import RoundDeclined
from fedbus_orchestration.state import Job

__all__ = ["declined_now", "describe", "with_decline"]


def declined_now(job: Job, now: datetime) -> frozenset[str]:
    """The clients that decline ``job`` at ``now``."""
    return frozenset(c for c, until in job.declined.items() if until is None or until > now)


def with_decline(job: Job, event: RoundDeclined, now: datetime) -> Job:
    """``job`` remembering ``event``'s decline; a decline for the whole job is never shortened.

    ``retry_after_s`` counts from ``now`` (when orchestration handles it), not from the
    trainer's clock: a skewed trainer clock cannot shorten the wait.
    """
    until: datetime | None = None
    if event.retry_after_s is not None:
        until = max(now, event.time) + timedelta(seconds=event.retry_after_s)
    client = event.client_id
    if client in job.declined:
        prior = job.declined[client]
        until = None if prior is None or until is None else max(prior, until)
    return replace(job, declined={**job.declined, client: until})


def describe(event: RoundDeclined) -> str:
    """``<client> declined round <r>: <code>: <message>; ...``."""
    reasons = "; ".join(f"{r.code}: {r.message}" for r in event.reasons)
    return f"{event.client_id} declined round {event.round}: {reasons}"
