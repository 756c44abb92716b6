"""How a job ends, and the events that say so: completed, failed, out of budget, cancelled,
or rejected before it started. Pure: each returns the final job and its events.

Every event orchestration emits is built here through :func:`emit` (source
``orchestration``, a child span of its cause's trace).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TypeVar

from fedbus.events import (
    Event,
    JobCancelRequested,
    JobCompleted,
    JobFailed,
    JobRejected,
    JobRequested,
    JobStatus,
    Phase,
    Progress,
    RejectionReason,
    child_traceparent,
)
from fedbus_orchestration.state import Job, JobState, Transition

__all__ = ["SOURCE", "cancel", "complete", "emit", "exhausted", "fail", "progress", "reject"]

SOURCE = "orchestration"
E = TypeVar("E", bound=Event)


def emit(job: Job, cls: type[E], cause_traceparent: str, **payload: Any) -> E:
    """An event of ``job``, traced as a child of its cause."""
    return cls.create(
        source=SOURCE,
        job_id=job.job_id,
        traceparent=child_traceparent(cause_traceparent),
        **payload,
    )


def progress(job: Job, tp: str, phase: Phase, message: str, rnd: int | None = None) -> Progress:
    """A ``progress`` event of ``job`` (``rnd``: the round it is about, if any)."""
    return emit(job, Progress, tp, round=rnd, phase=phase, message=message)


def reject(request: JobRequested, reasons: Sequence[RejectionReason]) -> list[Event]:
    """The events that refuse a request: ``job.rejected`` with every reason, and progress."""
    tp = request.traceparent
    rejected = JobRejected.create(
        source=SOURCE, job_id=request.job_id, traceparent=child_traceparent(tp),
        tenant=request.tenant, request_event_id=request.event_id, reasons=list(reasons),
    )  # fmt: skip
    message = "job rejected: " + "; ".join(f"{r.code} ({r.field}): {r.message}" for r in reasons)
    note = Progress.create(
        source=SOURCE, job_id=request.job_id, traceparent=child_traceparent(tp),
        phase=Phase.FAILED, message=message,
    )  # fmt: skip
    return [rejected, note]


def _ended(job: Job, tp: str, state: JobState, status: JobStatus, message: str) -> Transition:
    """``job.completed`` with ``status``, the last global model and the latest guarantee."""
    final = replace(job, state=state, deadline=None)
    phase = Phase.CANCELLED if state is JobState.CANCELLED else Phase.COMPLETED
    completed = emit(
        job, JobCompleted, tp, status=status, rounds_completed=job.rounds_completed,
        final_model=job.global_model, metrics=job.metrics, guarantee=job.guarantee(),
    )  # fmt: skip
    return Transition(final, [progress(job, tp, phase, message, job.round), completed])


def complete(job: Job, tp: str) -> Transition:
    """``job.completed(status=completed)`` after the job's last round."""
    message = f"job completed after {job.rounds_completed} round(s)"
    return _ended(job, tp, JobState.COMPLETED, JobStatus.COMPLETED, message)


def exhausted(job: Job, tp: str, reason: str = "") -> Transition:
    """``job.completed(status=budget_exhausted)`` with the last global model and guarantee."""
    message = f"privacy budget exhausted after {job.rounds_completed} round(s)"
    if reason:
        message += f": {reason}"
    return _ended(job, tp, JobState.COMPLETED, JobStatus.BUDGET_EXHAUSTED, message)


def cancel(job: Job, event: JobCancelRequested) -> Transition:
    """End a running job with status ``cancelled``; a finished job or another tenant's is kept."""
    if job.state.final or event.tenant != job.tenant:
        return Transition(job, [])
    reason = f": {event.reason}" if event.reason else ""
    message = f"job cancelled by {event.requested_by}{reason}"
    return _ended(job, event.traceparent, JobState.CANCELLED, JobStatus.CANCELLED, message)


def fail(job: Job, tp: str, code: str, message: str) -> Transition:
    """``job.failed`` with ``code`` and ``message``: the job stops in state ``failed``."""
    failed = replace(job, state=JobState.FAILED, deadline=None)
    event = emit(
        job, JobFailed, tp, code=code, message=message, round=job.round,
        rounds_completed=job.rounds_completed,
    )  # fmt: skip
    return Transition(failed, [progress(job, tp, Phase.FAILED, message, job.round), event])
