"""DP jobs in orchestration: the noise each round uses, admission, and waiting for the budget.

Handlers over the in-memory bus and store (docs/privacy.md, step 1). Every trainer of the
fixture announces 100 records of ``digits``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from fedbus.bus import InMemoryBus
from fedbus.events import (
    BudgetStatus,
    BudgetUpdated,
    Event,
    JobAccepted,
    JobCompleted,
    JobFailed,
    JobRejected,
    JobRequested,
    JobStatus,
    PrivacyMode,
    PrivacySpec,
    RoundCompleted,
    RoundStarted,
    TrainerHeartbeat,
    TrainingConfig,
)
from fedbus.privacy import compute_epsilon, noise_multiplier_for
from fedbus_orchestration.deps import Deps
from fedbus_orchestration.handlers import HANDLERS
from fedbus_orchestration.state import JobState, Policy
from fedbus_orchestration.watcher import check_deadlines

from .fakes import FakeJobStore

DELTA = 1e-5
TRAINING = TrainingConfig(local_epochs=2, batch_size=20, learning_rate=0.1)


@pytest.fixture
def deps(store: FakeJobStore, clock: Any) -> Deps:
    return Deps(store=store, policy=Policy(), clock=clock)


@pytest.fixture
async def bus(deps: Deps, make_heartbeat: Callable[..., TrainerHeartbeat]) -> InMemoryBus:
    bus = InMemoryBus()
    await bus.publish_many(make_heartbeat(cid) for cid in ("t1", "t2", "t3"))
    await bus.drain(HANDLERS.bind(deps))
    return bus


def dp(mode: PrivacyMode, **fields: float) -> PrivacySpec:
    return PrivacySpec(mode=mode, delta=DELTA, clipping_norm=1.0, **fields)


def of(bus: InMemoryBus, topic: str, job_id: str) -> list[Event]:
    return [e for e in bus.events(topic) if e.job_id == job_id]


def started_rounds(bus: InMemoryBus, job_id: str) -> list[RoundStarted]:
    return [e for e in of(bus, "round.started", job_id) if isinstance(e, RoundStarted)]


def budget(job_id: str, rnd: int, spent: float, *, exhausted: bool = False) -> BudgetUpdated:
    status = BudgetStatus(epsilon_spent=spent, epsilon_remaining=max(0.0, 4 - spent), delta=DELTA)
    return BudgetUpdated.create(
        source="privacy-accountant",
        job_id=job_id,
        round=rnd,
        budget={"epsilon": 4.0, "delta": DELTA},
        total=status,
        exhausted=exhausted,
    )


async def run(bus: InMemoryBus, deps: Deps, *events: Event) -> None:
    await bus.publish_many(events)
    await bus.drain(HANDLERS.bind(deps))


async def test_local_dp_noise_is_derived_so_that_every_planned_round_fits_the_budget(
    bus: InMemoryBus, deps: Deps, make_request: Callable[..., JobRequested]
) -> None:
    request = make_request(
        rounds=3, training=TRAINING, privacy=dp(PrivacyMode.LOCAL_DP, target_epsilon=4.0)
    )

    await run(bus, deps, request)

    (rs,) = started_rounds(bus, request.job_id)
    steps_per_round = 2 * math.ceil(100 / 20)
    expected = noise_multiplier_for(
        target_epsilon=4.0, delta=DELTA, sample_rate=20 / 100, steps=3 * steps_per_round
    )
    assert rs.privacy.noise_multiplier == pytest.approx(expected)
    spent = compute_epsilon(
        noise_multiplier=expected, sample_rate=0.2, steps=3 * steps_per_round, delta=DELTA
    )
    assert 3.98 <= spent <= 4.0
    (accepted,) = of(bus, "job.accepted", request.job_id)
    assert isinstance(accepted, JobAccepted)
    assert accepted.spec.privacy.noise_multiplier == rs.privacy.noise_multiplier


async def test_central_dp_noise_is_one_release_per_planned_round_at_rate_one(
    bus: InMemoryBus, deps: Deps, make_request: Callable[..., JobRequested]
) -> None:
    request = make_request(rounds=5, privacy=dp(PrivacyMode.CENTRAL_DP, target_epsilon=4.0))

    await run(bus, deps, request)

    (rs,) = started_rounds(bus, request.job_id)
    expected = noise_multiplier_for(target_epsilon=4.0, delta=DELTA, sample_rate=1.0, steps=5)
    assert rs.privacy.noise_multiplier == pytest.approx(expected)


async def test_the_specs_own_noise_multiplier_wins(
    bus: InMemoryBus, deps: Deps, make_request: Callable[..., JobRequested]
) -> None:
    request = make_request(
        privacy=dp(PrivacyMode.CENTRAL_DP, target_epsilon=8.0, noise_multiplier=2.5)
    )

    await run(bus, deps, request)

    assert [r.privacy.noise_multiplier for r in started_rounds(bus, request.job_id)] == [2.5]


@pytest.mark.parametrize("mode", [PrivacyMode.LOCAL_DP, PrivacyMode.CENTRAL_DP])
async def test_an_explicit_noise_whose_first_round_exceeds_the_budget_is_rejected(
    bus: InMemoryBus, deps: Deps, make_request: Callable[..., JobRequested], mode: PrivacyMode
) -> None:
    request = make_request(
        training=TRAINING, privacy=dp(mode, target_epsilon=1.0, noise_multiplier=0.3)
    )

    await run(bus, deps, request)

    (rejected,) = of(bus, "job.rejected", request.job_id)
    assert isinstance(rejected, JobRejected)
    assert [(r.code, r.field) for r in rejected.reasons] == [
        ("budget_too_small", "spec.privacy.noise_multiplier")
    ]
    assert started_rounds(bus, request.job_id) == []


async def test_a_dp_job_starts_the_next_round_only_after_the_budget_of_the_last(
    bus: InMemoryBus,
    deps: Deps,
    store: FakeJobStore,
    make_request: Callable[..., JobRequested],
    make_completed: Callable[..., RoundCompleted],
) -> None:
    request = make_request(rounds=2, privacy=dp(PrivacyMode.CENTRAL_DP, target_epsilon=4.0))
    await run(bus, deps, request)

    await run(bus, deps, make_completed(request.job_id, 1))

    assert [r.round for r in started_rounds(bus, request.job_id)] == [1]
    assert store.jobs[request.job_id].state is JobState.AWAITING_BUDGET

    await run(bus, deps, budget(request.job_id, 1, 1.5))

    assert [r.round for r in started_rounds(bus, request.job_id)] == [1, 2]

    await run(bus, deps, make_completed(request.job_id, 2), budget(request.job_id, 2, 3.1))

    (end,) = of(bus, "job.completed", request.job_id)
    assert isinstance(end, JobCompleted)
    assert (end.status, end.rounds_completed) == (JobStatus.COMPLETED, 2)
    assert end.guarantee is not None
    assert (end.guarantee.mode, end.guarantee.epsilon, end.guarantee.delta) == (
        PrivacyMode.CENTRAL_DP,
        3.1,
        DELTA,
    )


async def test_a_budget_that_overtakes_its_round_completed_is_kept_for_it(
    bus: InMemoryBus,
    deps: Deps,
    store: FakeJobStore,
    make_request: Callable[..., JobRequested],
    make_completed: Callable[..., RoundCompleted],
) -> None:
    request = make_request(rounds=3, privacy=dp(PrivacyMode.LOCAL_DP, target_epsilon=4.0))
    await run(bus, deps, request)

    await run(bus, deps, budget(request.job_id, 1, 1.2))

    assert [r.round for r in started_rounds(bus, request.job_id)] == [1]
    assert store.jobs[request.job_id].budget is not None  # persisted, not just seen

    await run(bus, deps, make_completed(request.job_id, 1))

    assert [r.round for r in started_rounds(bus, request.job_id)] == [1, 2]


@pytest.mark.parametrize("budget_first", [False, True])
async def test_an_exhausted_budget_ends_the_job_with_the_last_model_and_its_guarantee(
    bus: InMemoryBus,
    deps: Deps,
    make_request: Callable[..., JobRequested],
    make_completed: Callable[..., RoundCompleted],
    budget_first: bool,
) -> None:
    request = make_request(
        rounds=4, privacy=dp(PrivacyMode.LOCAL_DP, target_epsilon=4.0, noise_multiplier=2.0)
    )
    await run(bus, deps, request)
    await run(bus, deps, make_completed(request.job_id, 1), budget(request.job_id, 1, 1.5))
    second = make_completed(request.job_id, 2)
    exhausted = budget(request.job_id, 2, 2.9, exhausted=True)

    await run(bus, deps, *((exhausted, second) if budget_first else (second, exhausted)))

    assert [r.round for r in started_rounds(bus, request.job_id)] == [1, 2]
    (end,) = of(bus, "job.completed", request.job_id)
    assert isinstance(end, JobCompleted)
    assert (end.status, end.rounds_completed) == (JobStatus.BUDGET_EXHAUSTED, 2)
    assert end.final_model == second.global_model
    assert end.guarantee is not None
    assert (end.guarantee.mode, end.guarantee.epsilon) == (PrivacyMode.LOCAL_DP, 2.9)


async def test_a_redelivered_budget_changes_nothing(
    bus: InMemoryBus,
    deps: Deps,
    make_request: Callable[..., JobRequested],
    make_completed: Callable[..., RoundCompleted],
) -> None:
    request = make_request(rounds=3, privacy=dp(PrivacyMode.CENTRAL_DP, target_epsilon=4.0))
    await run(bus, deps, request)
    first = budget(request.job_id, 1, 1.0)

    await run(bus, deps, make_completed(request.job_id, 1), first, first)

    # The redelivery re-emits what the first delivery emitted: the same events, same ids.
    rounds = {(r.round, r.event_id) for r in started_rounds(bus, request.job_id)}
    assert sorted(rnd for rnd, _ in rounds) == [1, 2]


async def test_a_dp_job_whose_budget_never_comes_fails_instead_of_waiting_forever(
    bus: InMemoryBus,
    deps: Deps,
    store: FakeJobStore,
    clock: Any,
    make_request: Callable[..., JobRequested],
    make_completed: Callable[..., RoundCompleted],
) -> None:
    request = make_request(rounds=2, privacy=dp(PrivacyMode.CENTRAL_DP, target_epsilon=4.0))
    await run(bus, deps, request)
    await run(bus, deps, make_completed(request.job_id, 1))

    clock.advance(59)
    assert await check_deadlines(deps) == 0
    clock.advance(deps.policy.round_grace_seconds + 2)
    assert await check_deadlines(deps) == 1
    await store.publish_pending(bus.publish_many)

    (failed,) = of(bus, "job.failed", request.job_id)
    assert isinstance(failed, JobFailed)
    assert failed.code == "budget_timeout"
    assert "privacy accountant" in failed.message
    assert [r.round for r in started_rounds(bus, request.job_id)] == [1]
    assert store.jobs[request.job_id].state is JobState.FAILED
