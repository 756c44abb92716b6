"""The gateway's read model of a job, folded from events: pure logic, no I/O.

Each event type lives on its own topic, so one job's events can arrive in any order across
topics (``job.completed`` before the last ``round.completed``). :func:`apply` therefore
never moves a job backwards: the status only climbs its rank, round counters only grow.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from fedbus.events import (
    BudgetUpdated,
    Event,
    JobAccepted,
    JobCompleted,
    JobFailed,
    JobRejected,
    JobRequested,
    JobSpec,
    PrivacyMode,
    RoundCompleted,
    RoundStarted,
)

__all__ = ["TERMINAL", "JobView", "PrivacyView", "Reason", "ViewStatus", "apply", "new_view"]


class ViewStatus(StrEnum):
    """Where a job stands, as the gateway sees it."""

    REQUESTED = "requested"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    BUDGET_EXHAUSTED = "budget_exhausted"


TERMINAL = frozenset(
    {
        ViewStatus.REJECTED,
        ViewStatus.COMPLETED,
        ViewStatus.FAILED,
        ViewStatus.CANCELLED,
        ViewStatus.BUDGET_EXHAUSTED,
    }
)
_RANK = {ViewStatus.REQUESTED: 0, ViewStatus.ACCEPTED: 1, ViewStatus.RUNNING: 2}


class Reason(BaseModel):
    """Why a job was rejected (one per problem) or failed."""

    code: str
    field: str | None = None
    message: str


class PrivacyView(BaseModel):
    """A DP job's budget and what the privacy accountant counted of it (latest
    ``budget.updated``): epsilon spent by the job and by each client, at ``delta``."""

    mode: PrivacyMode | None = None
    budget_epsilon: float | None = None
    delta: float | None = None
    epsilon_spent: float = 0.0
    clients: dict[str, float] = Field(default_factory=dict)
    round: int | None = None
    exhausted: bool = False


class JobView(BaseModel):
    """One row of the read model; also the body of ``GET /v1/jobs/{id}``."""

    job_id: str
    tenant: str
    spec: JobSpec | None = None
    status: ViewStatus = ViewStatus.REQUESTED
    current_round: int | None = None
    rounds_completed: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)
    participants: list[str] = Field(default_factory=list)
    reasons: list[Reason] = Field(default_factory=list)
    final_model: dict[str, Any] | None = None
    privacy: PrivacyView | None = None
    idempotency_key: str | None = None
    created_at: datetime
    updated_at: datetime

    @property
    def ended(self) -> bool:
        """True once the job can change no more."""
        return self.status in TERMINAL


def new_view(
    *, job_id: str, tenant: str, spec: JobSpec | None, at: datetime, key: str | None = None
) -> JobView:
    """A freshly requested job."""
    return JobView(
        job_id=job_id, tenant=tenant, spec=spec, idempotency_key=key, created_at=at, updated_at=at
    )


def _advance(view: JobView, status: ViewStatus) -> ViewStatus:
    if view.ended:
        return view.status
    if status in TERMINAL or _RANK[status] > _RANK[view.status]:
        return status
    return view.status


def apply(view: JobView | None, event: Event) -> JobView | None:
    """The view after ``event``; None when the event cannot place an unknown job.

    ``job.requested`` and ``job.accepted``/``job.rejected`` name the tenant and can create a
    view; other events of a job the gateway never saw are dropped.
    """
    if view is None:
        tenant = getattr(event, "tenant", None)
        if not isinstance(event, JobRequested | JobAccepted | JobRejected) or tenant is None:
            return None
        view = new_view(job_id=event.job_id, tenant=tenant, spec=None, at=event.time)
    changes = _changes(view, event)
    if not changes:
        return view
    return view.model_copy(update={**changes, "updated_at": max(view.updated_at, event.time)})


def _changes(view: JobView, event: Event) -> dict[str, Any]:
    match event:
        case JobRequested():
            key = view.idempotency_key or event.idempotency_key
            return {"spec": view.spec or event.spec, "idempotency_key": key}
        case JobAccepted():
            changes = {"spec": event.spec, "status": _advance(view, ViewStatus.ACCEPTED)}
            return changes | _privacy_of_spec(view, event.spec)
        case JobRejected():
            reasons = [Reason.model_validate(r.model_dump()) for r in event.reasons]
            return {"status": _advance(view, ViewStatus.REJECTED), "reasons": reasons}
        case RoundStarted():
            current = max(view.current_round or 0, event.round)
            return {"status": _advance(view, ViewStatus.RUNNING), "current_round": current}
        case RoundCompleted():
            return _round_completed(view, event)
        case BudgetUpdated():
            return _budget_updated(view, event)
        case JobCompleted():
            return _job_completed(view, event)
        case JobFailed():
            reason = Reason(code=event.code, field=None, message=event.message)
            return {
                "status": _advance(view, ViewStatus.FAILED),
                "reasons": [reason],
                "rounds_completed": max(view.rounds_completed, event.rounds_completed),
            }
    return {}


def _round_completed(view: JobView, event: RoundCompleted) -> dict[str, Any]:
    changes: dict[str, Any] = {
        "status": _advance(view, ViewStatus.RUNNING),
        "rounds_completed": max(view.rounds_completed, event.round),
        "current_round": max(view.current_round or 0, event.round),
    }
    if event.round >= view.rounds_completed:  # a late, older round does not hide a newer one
        changes |= {"metrics": dict(event.metrics), "participants": list(event.participants)}
    return changes


def _job_completed(view: JobView, event: JobCompleted) -> dict[str, Any]:
    final = event.final_model.model_dump() if event.final_model is not None else None
    changes: dict[str, Any] = {
        "status": _advance(view, ViewStatus(event.status.value)),
        "rounds_completed": max(view.rounds_completed, event.rounds_completed),
        "final_model": final,
    }
    if event.metrics:
        changes["metrics"] = dict(event.metrics)
    return changes


def _privacy_of_spec(view: JobView, spec: JobSpec) -> dict[str, Any]:
    privacy = spec.privacy
    if privacy.mode is PrivacyMode.NONE:
        return {}
    known = view.privacy or PrivacyView()
    return {
        "privacy": known.model_copy(
            update={"mode": privacy.mode, "budget_epsilon": privacy.target_epsilon,
                    "delta": privacy.delta}
        )
    }  # fmt: skip


def _budget_updated(view: JobView, event: BudgetUpdated) -> dict[str, Any]:
    known = view.privacy
    if known is not None and (known.round or 0) > (event.round or 0):
        return {}  # an older round's budget, delivered late
    mode = view.spec.privacy.mode if view.spec is not None else None
    privacy = PrivacyView(
        mode=mode if mode is not PrivacyMode.NONE else None,
        budget_epsilon=event.budget.epsilon, delta=event.total.delta,
        epsilon_spent=event.total.epsilon_spent,
        clients={c: s.epsilon_spent for c, s in sorted(event.clients.items())},
        round=event.round, exhausted=event.exhausted,
    )  # fmt: skip
    return {"privacy": privacy}
