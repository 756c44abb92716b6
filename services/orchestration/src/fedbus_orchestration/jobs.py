"""The job state machine: pure transitions that return the new job and the events to emit.

``accepted -> running(round r, attempt a) [-> awaiting_budget(r)] -> completed | failed |
cancelled``. A DP job waits after each round for the privacy accountant's ``budget.updated``
of that round before it starts the next (or ends: docs/privacy.md, step 1). Nothing here
does I/O: the handlers load a :class:`~fedbus_orchestration.state.Job`, call a transition
with the clock and the eligible trainers, and persist the result with its events in one
transaction. How a job ends is in :mod:`~fedbus_orchestration.endings`; who a round selects
under the lifetime cap in :mod:`~fedbus_orchestration.lifetime`.

Rounds are numbered 1, 2, ... and never reused except by a deadline retry (same round, next
attempt). A diverged round is discarded: the next round number starts again from the last good
global model, and the job still needs ``spec.rounds`` good rounds, so at most
``max_rollbacks`` extra round numbers are used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from fedbus.events import (
    BudgetUpdated,
    JobAccepted,
    JobMode,
    JobRequested,
    JobSpec,
    Phase,
    RoundCompleted,
    RoundDeclined,
    RoundStarted,
)
from fedbus.privacy import UnreachableTargetError
from fedbus_orchestration.declines import declined_now, describe, with_decline
from fedbus_orchestration.endings import complete, emit, exhausted, fail, progress
from fedbus_orchestration.lifetime import CappedSelection, Lifetimes, select_within_caps
from fedbus_orchestration.state import Budget, Job, JobState, Policy, Transition, effective_spec

__all__ = [
    "accept",
    "after_budget",
    "after_deadline",
    "after_decline",
    "after_round",
    "divergence",
    "overdue",
]


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
    accepted = emit(
        job, JobAccepted, request.traceparent, tenant=job.tenant,
        request_event_id=request.event_id, spec=job.spec.model_copy(update={"privacy": privacy}),
    )  # fmt: skip
    return Transition(started.job, [accepted, *started.events])


def _min_clients(spec: JobSpec) -> int:
    return 1 if spec.mode is JobMode.CENTRALIZED else spec.min_clients


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
    out = declined_now(job, now)  # sites that decline the job are not asked again meanwhile
    eligible = [c for c in eligible if c not in out]
    try:
        pick = select_within_caps(
            spec, eligible, seed=job.seed, round=rnd, attempt=attempt, samples=samples or {},
            lifetimes=lifetimes,
        )  # fmt: skip
    except UnreachableTargetError as exc:
        return fail(job, tp, "budget_too_small", f"round {rnd}: {exc}")
    if pick.capped and pick.remaining < _min_clients(spec):
        return exhausted(job, tp, _capped_out(pick, rnd, lifetimes, _min_clients(spec)))
    if pick.capped:
        why += f"left out {len(pick.capped)} client(s) at their lifetime privacy cap; "
    deadline = now + timedelta(seconds=spec.round_deadline_seconds)
    running = replace(
        job, state=JobState.RUNNING, round=rnd, attempt=attempt, deadline=deadline,
        selected=tuple(pick.selected), noise_multiplier=pick.noise_multiplier,
    )  # fmt: skip
    message = (
        f"{why}round {rnd} attempt {attempt}: selected {len(pick.selected)} of {len(eligible)} "
        f"eligible trainer(s) (min {_min_clients(spec)}), deadline {deadline.isoformat()}"
    )
    announce = progress(job, tp, Phase.SCHEDULING, message, rnd)
    return Transition(running, [announce, _round_started(running, tp)])


def _round_started(running: Job, tp: str) -> RoundStarted:
    """``round.started`` of the round ``running`` has just opened."""
    spec = running.spec
    privacy = spec.privacy.model_copy(update={"noise_multiplier": running.noise_multiplier})
    return emit(
        running, RoundStarted, tp, round=running.round, selected_clients=list(running.selected),
        min_clients=_min_clients(spec), deadline=running.deadline,
        global_model=running.global_model, model=spec.model,
        model_options=spec.model_options, dataset=spec.dataset, training=spec.training,
        strategy=spec.strategy, privacy=privacy, lora=spec.lora, seed=running.seed,
    )  # fmt: skip


def _capped_out(pick: CappedSelection, rnd: int, lifetimes: Lifetimes | None, least: int) -> str:
    """Why round ``rnd`` cannot start: too few clients are left under the lifetime cap."""
    cap = lifetimes.cap if lifetimes is not None else 0.0
    return (
        f"round {rnd} cannot start: {len(pick.capped)} client(s) would pass the lifetime "
        f"privacy cap {cap:g} ({', '.join(pick.capped)}); {pick.remaining} left, "
        f"min_clients {least}"
    )


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
            return fail(job, tp, "diverged", message)
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
            return Transition(waiting, [progress(job, tp, Phase.SCHEDULING, message, job.round)])
        if budget.exhausted and job.rounds_completed < job.spec.rounds:
            return exhausted(job, tp)
    if job.rounds_completed >= job.spec.rounds:
        return complete(job, tp)
    return _start_round(
        job, job.round + 1, 1, eligible=eligible, now=now, tp=tp, why=note, samples=samples,
        lifetimes=lifetimes,
    )  # fmt: skip


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
        return fail(job, tp, "budget_timeout", message)
    attempts = job.attempt
    if attempts > policy.max_round_retries:
        message = (
            f"round {job.round}: fewer than min {job.spec.min_clients} of "
            f"{len(job.selected)} selected clients reported by the deadline, "
            f"{attempts} attempt(s)"
        )
        return fail(job, tp, "too_few_clients", message)
    note = f"round {job.round} attempt {attempts} missed its deadline; "
    return _start_round(
        job, job.round, attempts + 1, eligible=eligible, now=now, tp=tp, why=note,
        samples=samples, lifetimes=lifetimes,
    )  # fmt: skip


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
        return exhausted(updated, tp)
    return Transition(job, [])


def after_decline(
    job: Job,
    event: RoundDeclined,
    *,
    eligible: Sequence[str],
    now: datetime,
    policy: Policy,
    samples: Mapping[str, int] | None = None,
    lifetimes: Lifetimes | None = None,
) -> Transition:
    """Remember a site's decline; when the running round can no longer close, act now.

    The round keeps running while enough of its selected clients do not decline (the aggregator
    drops the decliner from the attempt at once and closes it when the others have reported).
    Otherwise, without waiting for the deadline: a new attempt from the trainers that do not
    decline, or ``job.failed`` with code ``clients_declined`` when too few remain (or the
    round's retries are spent).
    """
    if job.state.final:
        return Transition(job, [])
    updated = with_decline(job, event, now)
    if (
        job.state is not JobState.RUNNING
        or event.round != job.round
        or event.client_id not in job.selected
    ):
        return Transition(updated, [])
    out = declined_now(updated, now)
    least = _min_clients(job.spec)
    if sum(1 for c in job.selected if c not in out) >= least:
        return Transition(updated, [])
    available = [c for c in eligible if c not in out]
    tp, why = event.traceparent, describe(event)
    if len(available) < least:
        message = (
            f"round {job.round}: {len(available)} trainer(s) left that do not decline the job, "
            f"min_clients {least}; {why}"
        )
        return fail(updated, tp, "clients_declined", message)
    if job.attempt > policy.max_round_retries:
        message = f"round {job.round}: retries spent after {job.attempt} attempt(s); {why}"
        return fail(updated, tp, "clients_declined", message)
    return _start_round(
        updated, job.round, job.attempt + 1, eligible=available, now=now, tp=tp,
        why=f"{why}; ", samples=samples, lifetimes=lifetimes,
    )  # fmt: skip
