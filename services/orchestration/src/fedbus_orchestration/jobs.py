"""The job state machine: pure transitions that return the new job and the events to emit.

``accepted -> running(round r, attempt a) [-> awaiting_budget(r)] -> completed | failed |
cancelled``. A DP job waits after each round for the privacy accountant's ``budget.updated``
of that round before it starts the next (or ends: docs/privacy.md, step 1). Nothing here
does I/O: the handlers load a :class:`Job`, call a transition with the clock and the eligible
trainers, and persist the result with its events in one transaction.

Rounds are numbered 1, 2, ... and never reused except by a deadline retry (same round, next
attempt). A diverged round is discarded: the next round number starts again from the last good
global model, and the job still needs ``spec.rounds`` good rounds, so at most
``max_rollbacks`` extra round numbers are used.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from fedbus.events import (
    BudgetUpdated,
    Event,
    JobAccepted,
    JobCancelRequested,
    JobCompleted,
    JobFailed,
    JobMode,
    JobRejected,
    JobRequested,
    JobSpec,
    JobStatus,
    ModelRef,
    Phase,
    PrivacyGuarantee,
    PrivacyMode,
    Progress,
    RejectionReason,
    RoundCompleted,
    RoundStarted,
    child_traceparent,
)
from fedbus.privacy import UnreachableTargetError
from fedbus_orchestration.lifetime import Lifetimes, round_steps
from fedbus_orchestration.noise import round_noise_multiplier
from fedbus_orchestration.selection import select_clients

__all__ = [
    "SOURCE",
    "Budget",
    "Job",
    "JobState",
    "Policy",
    "Transition",
    "accept",
    "after_budget",
    "after_deadline",
    "after_round",
    "cancel",
    "divergence",
    "effective_spec",
    "overdue",
    "reject",
]

SOURCE = "orchestration"
ACCOUNTANT = "rdp"
"""How the privacy-accountant computes epsilon (``fedbus.privacy``: RDP, dp-accounting)."""
E = TypeVar("E", bound=Event)


class JobState(StrEnum):
    """Where a job is; the last three are final."""

    ACCEPTED = "accepted"
    RUNNING = "running"
    AWAITING_BUDGET = "awaiting_budget"
    """A DP job's round completed; the next starts once the accountant has counted it."""
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """True for completed, failed and cancelled."""
        return self in {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}


@dataclass(frozen=True)
class Policy:
    """The limits of retries and rollbacks."""

    max_round_retries: int = 2
    max_rollbacks: int = 2
    divergence_factor: float = 10.0
    round_grace_seconds: float = 5.0


@dataclass(frozen=True)
class Budget:
    """The latest ``budget.updated`` of a job: what its guarantee is after ``round``."""

    round: int
    epsilon_spent: float
    delta: float
    exhausted: bool

    @classmethod
    def of(cls, event: BudgetUpdated) -> Budget:
        """The budget an event reports (``round`` 0 for the initial one)."""
        return cls(
            round=event.round or 0, epsilon_spent=event.total.epsilon_spent,
            delta=event.total.delta, exhausted=event.exhausted,
        )  # fmt: skip


@dataclass(frozen=True)
class Job:
    """A job as orchestration stores it. ``version`` guards concurrent updates."""

    job_id: str
    tenant: str
    spec: JobSpec
    request_event_id: str
    traceparent: str
    idempotency_key: str | None = None
    state: JobState = JobState.ACCEPTED
    round: int = 0
    attempt: int = 0
    deadline: datetime | None = None
    selected: tuple[str, ...] = ()
    global_model: ModelRef | None = None
    previous_model: ModelRef | None = None
    rollbacks: int = 0
    rounds_completed: int = 0
    last_loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    noise_multiplier: float | None = None
    budget: Budget | None = None
    version: int = 0

    @property
    def seed(self) -> int:
        """The job's seed (the effective spec always has one)."""
        return self.spec.seed if self.spec.seed is not None else seed_for(self.job_id)

    @property
    def private(self) -> bool:
        """True for a DP job (local or central)."""
        return self.spec.privacy.mode is not PrivacyMode.NONE

    def guarantee(self) -> PrivacyGuarantee | None:
        """The guarantee of the latest budget, if the accountant sent one.

        (epsilon, delta) as the accountant computed them (RDP over rounds ``1..budget.round``),
        with the noise multiplier of the last round run and the configured clipping norm.
        """
        if self.budget is None:
            return None
        b = self.budget
        return PrivacyGuarantee(
            mode=self.spec.privacy.mode, epsilon=b.epsilon_spent, delta=b.delta,
            accountant=ACCOUNTANT, noise_multiplier=self.noise_multiplier,
            clipping_norm=self.spec.privacy.clipping_norm, rounds=b.round,
        )  # fmt: skip


@dataclass(frozen=True)
class Transition:
    """A job's new state and the events that announce it (empty: nothing happened)."""

    job: Job
    events: list[Event]


def seed_for(job_id: str) -> int:
    """A reproducible seed for a job that did not choose one."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:4], "big") >> 1


def effective_spec(spec: JobSpec, job_id: str) -> JobSpec:
    """The spec as it will run: the seed filled in when the request left it null."""
    if spec.seed is not None:
        return spec
    return spec.model_copy(update={"seed": seed_for(job_id)})


def _emit(job: Job, cls: type[E], cause_traceparent: str, **payload: Any) -> E:
    return cls.create(
        source=SOURCE,
        job_id=job.job_id,
        traceparent=child_traceparent(cause_traceparent),
        **payload,
    )


def _progress(job: Job, tp: str, phase: Phase, message: str, rnd: int | None = None) -> Progress:
    return _emit(job, Progress, tp, round=rnd, phase=phase, message=message)


def accept(
    request: JobRequested,
    *,
    eligible: Sequence[str],
    now: datetime,
    samples: Mapping[str, int] | None = None,
    lifetimes: Lifetimes | None = None,
) -> Transition:
    """Accept a validated request and open round 1, attempt 1.

    ``samples`` (records per trainer, from heartbeats) sizes a local-DP job's noise;
    ``lifetimes`` (the deployment's per-client cap) leaves out clients it would overspend.
    """
    job = Job(
        job_id=request.job_id,
        tenant=request.tenant,
        spec=effective_spec(request.spec, request.job_id),
        request_event_id=request.event_id,
        traceparent=request.traceparent,
        idempotency_key=request.idempotency_key,
    )
    started = _start_round(
        job, 1, 1, eligible=eligible, now=now, tp=request.traceparent, samples=samples,
        lifetimes=lifetimes,
    )  # fmt: skip
    # The effective spec reports the noise round 1 uses (derived when the request had none).
    privacy = job.spec.privacy.model_copy(update={"noise_multiplier": started.job.noise_multiplier})
    accepted = _emit(
        job, JobAccepted, request.traceparent, tenant=job.tenant,
        request_event_id=request.event_id, spec=job.spec.model_copy(update={"privacy": privacy}),
    )  # fmt: skip
    return Transition(started.job, [accepted, *started.events])


def reject(request: JobRequested, reasons: Sequence[RejectionReason]) -> list[Event]:
    """The events that refuse a request: ``job.rejected`` with every reason, and progress."""
    tp = request.traceparent
    rejected = JobRejected.create(
        source=SOURCE, job_id=request.job_id, traceparent=child_traceparent(tp),
        tenant=request.tenant, request_event_id=request.event_id, reasons=list(reasons),
    )  # fmt: skip
    message = "job rejected: " + "; ".join(f"{r.code} ({r.field}): {r.message}" for r in reasons)
    progress = Progress.create(
        source=SOURCE, job_id=request.job_id, traceparent=child_traceparent(tp),
        phase=Phase.FAILED, message=message,
    )  # fmt: skip
    return [rejected, progress]


def _start_round(
    job: Job,
    rnd: int,
    attempt: int,
    *,
    eligible: Sequence[str],
    now: datetime,
    tp: str,
    why: str = "",
    samples: Mapping[str, int] | None = None,
    lifetimes: Lifetimes | None = None,
) -> Transition:
    spec = job.spec
    samples = samples or {}
    min_clients = 1 if spec.mode is JobMode.CENTRALIZED else spec.min_clients
    # Select, then leave out every selected client the round would take past its lifetime
    # cap and select again from the rest: the noise depends on who is selected, so the
    # check runs on the final selection. The pool shrinks each time, so this ends.
    pool = list(eligible)
    capped: list[str] = []
    while True:
        selected = select_clients(spec, pool, seed=job.seed, round=rnd, attempt=attempt)
        try:
            noise = round_noise_multiplier(spec, selected=selected, samples=samples)
        except UnreachableTargetError as exc:
            return _fail(job, tp, "budget_too_small", f"round {rnd}: {exc}")
        over = _over_lifetime_cap(spec, selected, noise, samples, lifetimes)
        if not over:
            break
        capped += over
        pool = [c for c in pool if c not in over]
    if capped and len(pool) < min_clients:
        cap = lifetimes.cap if lifetimes is not None else 0.0
        reason = (
            f"round {rnd} cannot start: {len(capped)} client(s) would pass the lifetime "
            f"privacy cap {cap:g} ({', '.join(sorted(capped))}); {len(pool)} left, "
            f"min_clients {min_clients}"
        )
        return _exhausted(job, tp, reason)
    if capped:
        why += f"left out {len(capped)} client(s) at their lifetime privacy cap; "
    deadline = now + timedelta(seconds=spec.round_deadline_seconds)
    running = replace(
        job, state=JobState.RUNNING, round=rnd, attempt=attempt, deadline=deadline,
        selected=tuple(selected), noise_multiplier=noise,
    )  # fmt: skip
    message = (
        f"{why}round {rnd} attempt {attempt}: selected {len(selected)} of {len(eligible)} "
        f"eligible trainer(s) (min {min_clients}), deadline {deadline.isoformat()}"
    )
    started = _emit(
        job, RoundStarted, tp, round=rnd, selected_clients=selected, min_clients=min_clients,
        deadline=deadline, global_model=job.global_model, model=spec.model,
        dataset=spec.dataset, training=spec.training, strategy=spec.strategy,
        privacy=spec.privacy.model_copy(update={"noise_multiplier": noise}), seed=job.seed,
    )  # fmt: skip
    return Transition(running, [_progress(job, tp, Phase.SCHEDULING, message, rnd), started])


def _over_lifetime_cap(
    spec: JobSpec,
    selected: Sequence[str],
    noise: float | None,
    samples: Mapping[str, int],
    lifetimes: Lifetimes | None,
) -> list[str]:
    """The selected clients one more round of ``spec`` would take past their lifetime cap."""
    delta = spec.privacy.delta
    if lifetimes is None or noise is None or delta is None:
        return []
    return [
        c
        for c in selected
        if not lifetimes.allows(c, [round_steps(spec, c, noise, samples)], delta)
    ]


def divergence(job: Job, event: RoundCompleted, *, factor: float) -> str | None:
    """Why the round's new model diverged, or None when it did not."""
    for name, value in event.metrics.items():
        if not math.isfinite(value):
            return f"metric {name} is {value}"
    loss = event.metrics.get("loss")
    if loss is not None and job.last_loss is not None and loss > factor * job.last_loss:
        return f"loss {loss:.6g} > {factor:g} x previous {job.last_loss:.6g}"
    return None


def after_round(
    job: Job,
    event: RoundCompleted,
    *,
    eligible: Sequence[str],
    now: datetime,
    policy: Policy,
    samples: Mapping[str, int] | None = None,
    lifetimes: Lifetimes | None = None,
) -> Transition:
    """Advance on a round's result: next round, rollback, completion or failure.

    A DP job first waits for the accountant's budget of this round (unless it came first).
    A result for another round than the running one (late, redelivered, or of a finished
    job) changes nothing.
    """
    if job.state is not JobState.RUNNING or event.round != job.round:
        return Transition(job, [])
    tp = event.traceparent
    why = divergence(job, event, factor=policy.divergence_factor)
    if why is not None:
        if job.rollbacks >= policy.max_rollbacks:
            message = f"round {event.round} diverged ({why}) after {job.rollbacks} rollback(s)"
            return _fail(job, tp, "diverged", message)
        rolled = replace(job, rollbacks=job.rollbacks + 1)
        note = f"round {event.round} diverged ({why}); rolled back to the previous global model; "
        return _proceed(
            rolled, tp, note, eligible=eligible, now=now, samples=samples, lifetimes=lifetimes
        )
    done = replace(
        job, global_model=event.global_model, previous_model=job.global_model,
        rounds_completed=job.rounds_completed + 1, metrics=dict(event.metrics),
        last_loss=event.metrics.get("loss", job.last_loss),
    )  # fmt: skip
    note = f"round {event.round} completed; "
    return _proceed(
        done, tp, note, eligible=eligible, now=now, samples=samples, lifetimes=lifetimes
    )


def _proceed(
    job: Job, tp: str, note: str, *, eligible: Sequence[str], now: datetime,
    samples: Mapping[str, int] | None, lifetimes: Lifetimes | None = None,
) -> Transition:  # fmt: skip
    """After round ``job.round``: wait for its budget (DP), end, or start the next round."""
    if job.private:
        budget = job.budget
        if budget is None or budget.round < job.round:
            # The accountant answers within a round's deadline, or the job stops: it never
            # waits forever, and never starts a round whose spend nobody accounted for.
            wait = timedelta(seconds=job.spec.round_deadline_seconds)
            waiting = replace(job, state=JobState.AWAITING_BUDGET, deadline=now + wait)
            message = f"{note}waiting for the privacy accountant's budget of round {job.round}"
            return Transition(waiting, [_progress(job, tp, Phase.SCHEDULING, message, job.round)])
        if budget.exhausted and job.rounds_completed < job.spec.rounds:
            return _exhausted(job, tp)
    if job.rounds_completed >= job.spec.rounds:
        return _complete(job, tp)
    return _start_round(
        job, job.round + 1, 1, eligible=eligible, now=now, tp=tp, why=note, samples=samples,
        lifetimes=lifetimes,
    )  # fmt: skip


def _complete(job: Job, tp: str) -> Transition:
    final = replace(job, state=JobState.COMPLETED, deadline=None)
    message = f"job completed after {job.rounds_completed} round(s)"
    completed = _emit(
        job, JobCompleted, tp, status=JobStatus.COMPLETED, rounds_completed=job.rounds_completed,
        final_model=job.global_model, metrics=job.metrics, guarantee=job.guarantee(),
    )  # fmt: skip
    return Transition(final, [_progress(job, tp, Phase.COMPLETED, message, job.round), completed])


def _fail(job: Job, tp: str, code: str, message: str) -> Transition:
    failed = replace(job, state=JobState.FAILED, deadline=None)
    event = _emit(
        job, JobFailed, tp, code=code, message=message, round=job.round,
        rounds_completed=job.rounds_completed,
    )  # fmt: skip
    return Transition(failed, [_progress(job, tp, Phase.FAILED, message, job.round), event])


def overdue(job: Job, now: datetime, *, grace_seconds: float) -> bool:
    """True when the running round (or the wait for its budget) is past its deadline + grace."""
    if job.state not in {JobState.RUNNING, JobState.AWAITING_BUDGET} or job.deadline is None:
        return False
    return now > job.deadline + timedelta(seconds=grace_seconds)


def after_deadline(
    job: Job,
    *,
    eligible: Sequence[str],
    now: datetime,
    policy: Policy,
    samples: Mapping[str, int] | None = None,
    lifetimes: Lifetimes | None = None,
) -> Transition:
    """Retry an overdue round with a new selection, or fail the job when retries are spent."""
    if not overdue(job, now, grace_seconds=policy.round_grace_seconds):
        return Transition(job, [])
    tp = job.traceparent
    if job.state is JobState.AWAITING_BUDGET:
        message = (
            f"round {job.round}: no budget.updated from the privacy accountant within "
            f"{job.spec.round_deadline_seconds} s after the round; stopping instead of "
            "spending epsilon nobody accounted for"
        )
        return _fail(job, tp, "budget_timeout", message)
    attempts = job.attempt
    if attempts > policy.max_round_retries:
        message = (
            f"round {job.round}: fewer than min {job.spec.min_clients} of "
            f"{len(job.selected)} selected clients reported by the deadline, "
            f"{attempts} attempt(s)"
        )
        return _fail(job, tp, "too_few_clients", message)
    note = f"round {job.round} attempt {attempts} missed its deadline; "
    return _start_round(
        job, job.round, attempts + 1, eligible=eligible, now=now, tp=tp, why=note,
        samples=samples, lifetimes=lifetimes,
    )  # fmt: skip


def cancel(job: Job, event: JobCancelRequested) -> Transition:
    """End a running job with status ``cancelled``; a finished job or another tenant's is kept."""
    if job.state.final or event.tenant != job.tenant:
        return Transition(job, [])
    tp = event.traceparent
    ended = replace(job, state=JobState.CANCELLED, deadline=None)
    reason = f": {event.reason}" if event.reason else ""
    message = f"job cancelled by {event.requested_by}{reason}"
    completed = _emit(
        job, JobCompleted, tp, status=JobStatus.CANCELLED, rounds_completed=job.rounds_completed,
        final_model=job.global_model, metrics=job.metrics, guarantee=job.guarantee(),
    )  # fmt: skip
    return Transition(ended, [_progress(job, tp, Phase.CANCELLED, message, job.round), completed])


def after_budget(
    job: Job,
    event: BudgetUpdated,
    *,
    eligible: Sequence[str] = (),
    now: datetime | None = None,
    samples: Mapping[str, int] | None = None,
    lifetimes: Lifetimes | None = None,
) -> Transition:
    """Take the accountant's budget of a round into account.

    - the round the job waits for: end it (``budget_exhausted``, or ``completed`` after its
      last round) or start the next round;
    - the running round (the budget overtook its ``round.completed``): remember it, no event;
    - an older round that says ``exhausted`` (a lifetime cap, say): end the job now;
    - anything else (older, redelivered, a finished job): nothing changes.
    """
    if job.state.final or event.round is None or event.round > job.round:
        return Transition(job, [])
    if job.budget is not None and job.budget.round > event.round:
        return Transition(job, [])
    updated = replace(job, budget=Budget.of(event))
    tp = event.traceparent
    if event.round == job.round and job.state is JobState.AWAITING_BUDGET:
        note = f"round {job.round} counted: epsilon {event.total.epsilon_spent:.4g} spent; "
        moment = now if now is not None else event.time
        return _proceed(
            updated, tp, note, eligible=eligible, now=moment, samples=samples, lifetimes=lifetimes
        )
    if event.round == job.round:
        return Transition(updated, [])
    if event.exhausted:
        return _exhausted(updated, tp)
    return Transition(job, [])


def _exhausted(job: Job, tp: str, reason: str = "") -> Transition:
    """``job.completed(status=budget_exhausted)`` with the last global model and guarantee."""
    ended = replace(job, state=JobState.COMPLETED, deadline=None)
    message = f"privacy budget exhausted after {job.rounds_completed} round(s)"
    if reason:
        message += f": {reason}"
    completed = _emit(
        job, JobCompleted, tp, status=JobStatus.BUDGET_EXHAUSTED,
        rounds_completed=job.rounds_completed, final_model=job.global_model,
        metrics=job.metrics, guarantee=job.guarantee(),
    )  # fmt: skip
    return Transition(ended, [_progress(job, tp, Phase.COMPLETED, message, job.round), completed])
