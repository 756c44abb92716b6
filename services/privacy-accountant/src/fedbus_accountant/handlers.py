"""Event handlers: record budgets and spendings, publish each round's ``budget.updated`` once.

The three input topics are read independently, so the facts of a round can arrive in any
order (a ``round.completed`` before its ``update.submitted`` events, a ``job.accepted``
last). Every handler records its fact, then publishes the budget of every round that has
become ready, in round order. A round's event is stored before it is returned; asked again
(a redelivery after a crash), the handler returns the stored event unchanged.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from fedbus.bus import Routes, route
from fedbus.errors import NonRetryableError
from fedbus.events import (
    BudgetStatus,
    BudgetUpdated,
    ClientBudgetUpdated,
    DpUsage,
    Event,
    GaussianSpend,
    JobAccepted,
    PrivacyBudget,
    PrivacyMode,
    RoundCompleted,
    UpdateSubmitted,
    child_traceparent,
)
from fedbus.privacy import Mechanism
from fedbus.telemetry import log_context
from fedbus_accountant.accounting import (
    BudgetFigures,
    ClientLifetime,
    JobBudget,
    Spending,
    figures_after_round,
    lifetime_of,
)
from fedbus_accountant.deps import Deps
from fedbus_accountant.store import AccountantStore

__all__ = [
    "HANDLERS",
    "SOURCE",
    "budget_event",
    "client_budget_event",
    "on_job_accepted",
    "on_round_completed",
    "on_update_submitted",
]

log = logging.getLogger(__name__)

SOURCE = "privacy-accountant"
_EVENT_IDS = uuid.UUID("8a4f2c1e-3b6d-4e7f-9a1b-2c3d4e5f6a7b")


async def on_job_accepted(event: JobAccepted, *, deps: Deps) -> list[Event]:
    """Remember a DP job's budget (jobs without DP are ignored).

    Raises
    ------
    NonRetryableError
        A DP job without ``target_epsilon`` or ``delta``: nothing can be accounted.
    """
    privacy = event.spec.privacy
    if privacy.mode is PrivacyMode.NONE:
        return []
    with log_context(job_id=event.job_id):
        if privacy.target_epsilon is None or privacy.delta is None:
            raise NonRetryableError(f"DP job {event.job_id} has no target_epsilon or delta")
        budget = JobBudget(
            event.job_id, privacy.mode, privacy.target_epsilon, privacy.delta, event.spec.dataset
        )
        await deps.store.save_budget(budget)
        # Spendings that arrived before the job's dataset was known reach the lifetimes now.
        charged = [c for s in await deps.store.spendings(event.job_id) for c in s.clients]
        lifetimes = await _lifetime_events(event, charged, deps=deps)
        return lifetimes + await _publish_ready(event, store=deps.store)


async def on_update_submitted(event: UpdateSubmitted, *, deps: Deps) -> list[Event]:
    """Record a trainer's local-DP spending (keyed by the event id) for its round."""
    with log_context(job_id=event.job_id, round=event.round, client_id=event.client_id):
        if event.dp is None or event.dp.noise_multiplier == 0:
            # No DP facts, or clipping only (central DP): nothing spent by this update.
            return await _publish_ready(event, store=deps.store)
        spending = _spending(event, (event.client_id,), event.dp, "local-dp")
        if not await deps.store.add_spending(spending):
            log.info("update %s already in the ledger", event.event_id)
        lifetimes = await _lifetime_events(event, [event.client_id], deps=deps)
        return lifetimes + await _publish_ready(event, store=deps.store, asked=event.round)


async def on_round_completed(event: RoundCompleted, *, deps: Deps) -> list[Event]:
    """Record the round's participants and its central-DP release, if any."""
    with log_context(job_id=event.job_id, round=event.round):
        await deps.store.save_round(event.job_id, event.round, event.participants)
        lifetimes: list[Event] = []
        if event.dp is not None and event.dp.noise_multiplier > 0:
            release = _spending(event, tuple(event.participants), event.dp, "central-dp")
            await deps.store.add_spending(release)
            lifetimes = await _lifetime_events(event, event.participants, deps=deps)
        return lifetimes + await _publish_ready(event, store=deps.store, asked=event.round)


def _spending(
    event: Event, clients: tuple[str, ...], dp: DpUsage, mechanism: Mechanism
) -> Spending:
    round_ = getattr(event, "round", 0)
    return Spending(
        event_id=event.event_id, job_id=event.job_id, round=int(round_), clients=clients,
        mechanism=mechanism, noise_multiplier=dp.noise_multiplier,
        sample_rate=dp.sample_rate, steps=dp.steps,
    )  # fmt: skip


async def _publish_ready(
    cause: Event,
    *,
    store: AccountantStore,
    asked: int | None = None,
) -> list[Event]:
    """Publish every ready, unpublished round in order; repeat round ``asked`` if published."""
    job = await store.budget(cause.job_id)
    if job is None:
        return []
    rounds = await store.rounds(cause.job_id)
    published = await store.published(cause.job_id)
    spendings = await store.spendings(cause.job_id)
    out: list[Event] = []
    for round_ in sorted(rounds):
        if round_ in published:
            if round_ == asked:
                out.append(published[round_])
            continue
        figures = figures_after_round(job, round_, rounds, spendings)
        if figures is None:
            log.info("round %d of job %s waits for its updates", round_, job.job_id)
            break
        stored = await store.publish(budget_event(job, figures, cause=cause))
        log.info(
            "job %s round %d: epsilon %.6g of %.6g%s", job.job_id, round_, figures.total,
            job.target_epsilon, " (exhausted)" if figures.exhausted else "",
        )  # fmt: skip
        out.append(stored)
    return out


async def _lifetime_events(cause: Event, clients: Sequence[str], *, deps: Deps) -> list[Event]:
    """A ``client.budget.updated`` per client charged by ``cause`` (once the job's dataset is
    known: until its ``job.accepted`` arrives, the spending waits in the ledger)."""
    job = await deps.store.budget(cause.job_id)
    if job is None or not clients:
        return []
    rows = await deps.store.spendings_on_dataset(job.dataset)
    cap = deps.lifetime_epsilon
    return [
        client_budget_event(job, lifetime_of(c, job.dataset, rows), cap=cap, cause=cause)
        for c in sorted(set(clients))
    ]


def client_budget_event(
    job: JobBudget, lifetime: ClientLifetime, *, cap: float | None, cause: Event
) -> ClientBudgetUpdated:
    """A client's lifetime spend on a dataset, at the causing job's delta.

    Its event id is derived from (client, dataset, entries), so a redelivered cause (or a
    rebuilt accountant) announces the same state under the same id.
    """
    event = ClientBudgetUpdated.create(
        source=SOURCE,
        job_id=job.job_id,
        traceparent=child_traceparent(cause.traceparent),
        client_id=lifetime.client_id,
        dataset=lifetime.dataset,
        entries=lifetime.entries,
        mechanisms=[
            GaussianSpend(
                noise_multiplier=m.noise_multiplier, sample_rate=m.sample_rate, steps=m.steps
            )
            for m in lifetime.mechanisms
        ],
        rounds={j: list(r) for j, r in lifetime.rounds.items()},
        epsilon_spent=lifetime.epsilon(job.delta),
        delta=job.delta,
        cap=cap,
    )
    key = f"client.budget.updated:{lifetime.client_id}:{lifetime.dataset}:{lifetime.entries}"
    return event.model_copy(update={"event_id": str(uuid.uuid5(_EVENT_IDS, key))})


def budget_event(job: JobBudget, figures: BudgetFigures, *, cause: Event) -> BudgetUpdated:
    """The ``budget.updated`` of one round, continuing the trace of ``cause``.

    Its event id is derived from (job, round), so a rebuilt accountant announces a round
    under the same id and consumers that already saw it skip it.
    """
    event = BudgetUpdated.create(
        source=SOURCE,
        job_id=job.job_id,
        traceparent=child_traceparent(cause.traceparent),
        round=figures.round,
        budget=PrivacyBudget(epsilon=job.target_epsilon, delta=job.delta),
        total=_status(job, figures.total),
        clients={c: _status(job, eps) for c, eps in figures.clients.items()},
        exhausted=figures.exhausted,
    )
    event_id = uuid.uuid5(_EVENT_IDS, f"budget.updated:{job.job_id}:{figures.round}")
    return event.model_copy(update={"event_id": str(event_id)})


def _status(job: JobBudget, spent: float) -> BudgetStatus:
    return BudgetStatus(
        epsilon_spent=spent,
        epsilon_remaining=max(0.0, job.target_epsilon - spent),
        delta=job.delta,
    )


HANDLERS = Routes[Deps](
    route(JobAccepted, on_job_accepted),
    route(UpdateSubmitted, on_update_submitted),
    route(RoundCompleted, on_round_completed),
)
"""The routing table: event class -> handler; ``HANDLERS.bind(deps)`` feeds the consumer."""
