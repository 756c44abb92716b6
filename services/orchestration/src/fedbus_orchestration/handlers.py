"""Event handlers: load the job, call the pure state machine, save and emit in one step.

``HANDLERS`` is the routing table (``HANDLERS.bind(deps)`` gives the consumer runner
one-argument handlers). Every handler first looks for the events its cause already produced
(a redelivery after a crash) and returns those unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from fedbus.bus import Routes, route
from fedbus.events import (
    BudgetUpdated,
    ClientBudgetUpdated,
    Event,
    JobCancelRequested,
    JobRequested,
    JobSpec,
    PrivacyMode,
    RoundCompleted,
    RoundDeclined,
    TrainerHeartbeat,
)
from fedbus.telemetry import log_context
from fedbus_orchestration.admission import capabilities_of, trainer_problems
from fedbus_orchestration.deps import Deps
from fedbus_orchestration.endings import cancel, reject
from fedbus_orchestration.jobs import accept, after_budget, after_decline, after_round
from fedbus_orchestration.lifetime import ClientSpend, InFlight, Lifetimes, pending_rounds
from fedbus_orchestration.selection import TrainerInfo, eligible_trainers
from fedbus_orchestration.state import Job, Transition
from fedbus_orchestration.validation import validate_request

__all__ = [
    "HANDLERS",
    "Roster",
    "on_budget_updated",
    "on_client_budget_updated",
    "on_job_cancel_requested",
    "on_job_requested",
    "on_round_completed",
    "on_round_declined",
    "on_trainer_heartbeat",
    "roster_for",
]

log = logging.getLogger(__name__)
E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class Roster:
    """The trainers that may train a job now, the records each holds of its dataset, and
    (under a lifetime cap, for a DP job) what each has spent and has in flight.

    ``eligible`` are the fresh trainers holding the dataset that can build the job's model
    with its options for it; ``holders`` every fresh one holding the dataset (admission
    explains why the others cannot)."""

    eligible: list[str]
    samples: dict[str, int]
    lifetimes: Lifetimes | None = None
    holders: tuple[TrainerInfo, ...] = ()


async def roster_for(deps: Deps, spec: JobSpec, now: datetime) -> Roster:
    """Who may train ``spec`` now (sorted ids) and their sample counts (from heartbeats)."""
    trainers = await deps.store.trainers(spec.dataset)
    fresh = eligible_trainers(
        trainers, dataset=spec.dataset, now=now, staleness_factor=deps.staleness_factor
    )
    holders = tuple(t for t in trainers if t.client_id in fresh)
    eligible = [t.client_id for t in holders if not trainer_problems(t, spec)]
    eligible.sort()
    samples = {t.client_id: t.datasets[spec.dataset] for t in trainers if t.client_id in eligible}
    if deps.lifetime_cap is None or spec.privacy.mode is PrivacyMode.NONE:
        return Roster(eligible, samples, holders=holders)
    spent = await deps.store.client_spends(spec.dataset)
    every = {t.client_id: t.datasets[spec.dataset] for t in trainers}
    in_flight = [  # running() is every job whose round (or its budget wait) is open
        InFlight(j.job_id, j.round, j.spec, j.selected, j.noise_multiplier)
        for j in await deps.store.running()
        if j.noise_multiplier is not None
    ]
    pending = pending_rounds(in_flight, spent, every, dataset=spec.dataset)
    return Roster(eligible, samples, Lifetimes(deps.lifetime_cap, spent, pending), holders)


async def _save(deps: Deps, cause: Event, transition: Transition) -> list[Event]:
    if transition.events:
        await deps.store.record(
            cause_id=cause.event_id, events=transition.events, job=transition.job
        )
    return transition.events


async def on_job_requested(event: JobRequested, *, deps: Deps) -> list[Event]:
    """Validate a request: ``job.rejected``, or ``job.accepted`` and round 1's ``round.started``."""
    with log_context(job_id=event.job_id):
        replay = await deps.store.emitted(event.event_id)
        if replay is not None:
            return replay
        if await deps.store.get(event.job_id) is not None:
            log.warning("job %s exists already; request %s ignored", event.job_id, event.event_id)
            return []
        key = event.idempotency_key
        if key is not None and await deps.store.find_by_idempotency_key(event.tenant, key):
            log.info("idempotency key %r of tenant %s seen before; ignored", key, event.tenant)
            return []
        now = deps.clock()
        roster = await roster_for(deps, event.spec, now)
        reasons = validate_request(
            event.spec, job_id=event.job_id, known_datasets=deps.known_datasets,
            holders=roster.holders, samples=roster.samples, lifetimes=roster.lifetimes,
            aggregator_models=deps.aggregator_models,
        )  # fmt: skip
        if reasons:
            events = reject(event, reasons)
            await deps.store.record(cause_id=event.event_id, events=events)
            log.info("job rejected: %s", ", ".join(r.code for r in reasons))
            return events
        log.info("job accepted for tenant %s", event.tenant)
        transition = accept(
            event, eligible=roster.eligible, now=now, samples=roster.samples,
            lifetimes=roster.lifetimes,
        )  # fmt: skip
        return await _save(deps, event, transition)


async def _on_job_event(
    event: E, deps: Deps, step: Callable[[Job, E, Roster, datetime], Transition]
) -> list[Event]:
    with log_context(job_id=event.job_id):
        replay = await deps.store.emitted(event.event_id)
        if replay is not None:
            return replay
        job = await deps.store.get(event.job_id)
        if job is None:
            log.warning("%s for unknown job ignored", event.type)
            return []
        now = deps.clock()
        transition = step(job, event, await roster_for(deps, job.spec, now), now)
        if not transition.events and transition.job == job:
            log.info("%s ignored: job is %s round %d", event.type, job.state, job.round)
            return []
        # A change without events (a budget ahead of its round.completed) is saved too.
        await deps.store.record(cause_id=event.event_id, events=transition.events,
                               job=transition.job)  # fmt: skip
        events = transition.events
        new = transition.job
        log.info("%s handled: job %s, round %d attempt %d", event.type, new.state, new.round,
                 new.attempt)  # fmt: skip
        return events


async def on_round_completed(event: RoundCompleted, *, deps: Deps) -> list[Event]:
    """Next round, rollback, ``job.completed`` or ``job.failed``; stale rounds are ignored."""

    def step(job: Job, ev: RoundCompleted, roster: Roster, now: datetime) -> Transition:
        return after_round(
            job, ev, eligible=roster.eligible, now=now, policy=deps.policy,
            samples=roster.samples, lifetimes=roster.lifetimes,
        )  # fmt: skip

    return await _on_job_event(event, deps, step)


async def on_round_declined(event: RoundDeclined, *, deps: Deps) -> list[Event]:
    """Leave a declining site out of the job; a new attempt or ``job.failed`` when its round
    can no longer close."""

    def step(job: Job, ev: RoundDeclined, roster: Roster, now: datetime) -> Transition:
        return after_decline(
            job, ev, eligible=roster.eligible, now=now, policy=deps.policy,
            samples=roster.samples, lifetimes=roster.lifetimes,
        )  # fmt: skip

    return await _on_job_event(event, deps, step)


async def on_job_cancel_requested(event: JobCancelRequested, *, deps: Deps) -> list[Event]:
    """``job.completed(status=cancelled)`` for a job of the same tenant that still runs."""
    return await _on_job_event(event, deps, lambda job, ev, _e, _n: cancel(job, ev))


async def on_budget_updated(event: BudgetUpdated, *, deps: Deps) -> list[Event]:
    """A DP job's next round, ``job.completed`` (``budget_exhausted`` when the accountant says
    the budget is spent), or nothing yet when the budget came before its ``round.completed``."""

    def step(job: Job, ev: BudgetUpdated, roster: Roster, now: datetime) -> Transition:
        return after_budget(
            job, ev, eligible=roster.eligible, now=now, samples=roster.samples,
            lifetimes=roster.lifetimes,
        )  # fmt: skip

    return await _on_job_event(event, deps, step)


async def on_trainer_heartbeat(event: TrainerHeartbeat, *, deps: Deps) -> list[Event]:
    """Remember a trainer's datasets, what it can build, its status and when it was seen."""
    await deps.store.save_trainer(
        TrainerInfo(
            client_id=event.client_id, datasets={d.name: d.num_samples for d in event.datasets},
            device=event.device, status=event.status, last_seen=event.time,
            interval_seconds=event.interval_seconds, active_jobs=tuple(event.active_jobs),
            capabilities=capabilities_of(event),
        )
    )  # fmt: skip
    return []


async def on_client_budget_updated(event: ClientBudgetUpdated, *, deps: Deps) -> list[Event]:
    """Remember a client's lifetime spend on a dataset (the announcement with most entries)."""
    await deps.store.save_client_spend(ClientSpend.of(event))
    return []


HANDLERS = Routes[Deps](
    route(JobRequested, on_job_requested),
    route(JobCancelRequested, on_job_cancel_requested),
    route(RoundCompleted, on_round_completed),
    route(RoundDeclined, on_round_declined),
    route(BudgetUpdated, on_budget_updated),
    route(TrainerHeartbeat, on_trainer_heartbeat),
    route(ClientBudgetUpdated, on_client_budget_updated),
)
