"""The deployment's per-client lifetime cap: selection leaves capped clients out, admission
refuses jobs nobody can afford, rounds in flight are reserved (docs/privacy.md, step 2).

Handlers over the in-memory bus and store; trainers t1..t3 each announce 100 records of
``digits``. Central DP at an explicit noise multiplier keeps the arithmetic readable: each round
a client takes part in is one Gaussian release at sampling rate 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fedbus.bus import InMemoryBus
from fedbus.events import (
    BudgetStatus,
    BudgetUpdated,
    ClientBudgetUpdated,
    Event,
    GaussianSpend,
    JobCompleted,
    JobMode,
    JobRejected,
    JobRequested,
    JobSpec,
    JobStatus,
    PrivacyMode,
    PrivacySpec,
    Progress,
    RoundCompleted,
    RoundStarted,
    TrainerHeartbeat,
    TrainingConfig,
)
from fedbus.privacy import GaussianSteps, compute_epsilon_composed
from fedbus_orchestration.deps import Deps
from fedbus_orchestration.handlers import HANDLERS
from fedbus_orchestration.lifetime import (
    ClientSpend,
    InFlight,
    Lifetimes,
    pending_rounds,
    round_steps,
)
from fedbus_orchestration.state import Policy

from .fakes import FakeJobStore

DELTA = 1e-5
Z = 2.0
RELEASE = GaussianSteps(Z, 1.0, 1)


def central(rounds: int) -> float:
    """Epsilon of ``rounds`` central releases at noise Z."""
    return compute_epsilon_composed(history=[RELEASE] * rounds, delta=DELTA)


def deps_with(store: FakeJobStore, clock: Any, cap: float) -> Deps:
    return Deps(
        store=store, policy=Policy(), clock=clock,
        lifetime_cap=cap,
    )  # fmt: skip


async def fleet(deps: Deps, make_heartbeat: Callable[..., TrainerHeartbeat]) -> InMemoryBus:
    bus = InMemoryBus()
    await bus.publish_many(make_heartbeat(cid) for cid in ("t1", "t2", "t3"))
    await bus.drain(HANDLERS.bind(deps))
    return bus


def private(**fields: Any) -> dict[str, Any]:
    privacy = PrivacySpec(
        mode=PrivacyMode.CENTRAL_DP, target_epsilon=100.0, delta=DELTA, noise_multiplier=Z,
        clipping_norm=1.0,
    )  # fmt: skip
    return {"privacy": privacy, **fields}


def spent(client: str, releases: int, *, job: str = "old-job") -> ClientBudgetUpdated:
    """The accountant's announcement that ``client`` ran ``releases`` releases in ``job``."""
    return ClientBudgetUpdated.create(
        source="privacy-accountant", job_id=job, client_id=client, dataset="digits",
        entries=releases,
        mechanisms=[GaussianSpend(noise_multiplier=Z, sample_rate=1.0, steps=releases)],
        rounds={job: list(range(1, releases + 1))}, epsilon_spent=central(releases),
        delta=DELTA,
    )  # fmt: skip


def budget(job_id: str, rnd: int, eps: float) -> BudgetUpdated:
    status = BudgetStatus(epsilon_spent=eps, epsilon_remaining=100 - eps, delta=DELTA)
    return BudgetUpdated.create(
        source="privacy-accountant", job_id=job_id, round=rnd,
        budget={"epsilon": 100.0, "delta": DELTA}, total=status, exhausted=False,
    )  # fmt: skip


def of(bus: InMemoryBus, topic: str, job_id: str) -> list[Event]:
    return [e for e in bus.events(topic) if e.job_id == job_id]


async def run(bus: InMemoryBus, deps: Deps, *events: Event) -> None:
    await bus.publish_many(events)
    await bus.drain(HANDLERS.bind(deps))


async def test_a_client_at_its_lifetime_cap_is_left_out_of_the_selection(
    store: FakeJobStore,
    clock: Any,
    make_heartbeat: Callable[..., TrainerHeartbeat],
    make_request: Callable[..., JobRequested],
) -> None:
    deps = deps_with(store, clock, cap=central(3) * 1.001)
    bus = await fleet(deps, make_heartbeat)
    await run(bus, deps, spent("t1", 3))  # a 4th release would pass the cap
    request = make_request(rounds=1, clients_per_round=3, **private())  # all, without the cap

    await run(bus, deps, request)

    [started] = [e for e in of(bus, "round.started", request.job_id) if isinstance(e, RoundStarted)]
    assert started.selected_clients == ["t2", "t3"]
    notes = [e.message for e in of(bus, "progress", request.job_id) if isinstance(e, Progress)]
    assert any("left out 1 client(s) at their lifetime privacy cap" in n for n in notes)


async def test_a_job_whose_clients_reach_their_cap_mid_way_ends_budget_exhausted(
    store: FakeJobStore,
    clock: Any,
    make_heartbeat: Callable[..., TrainerHeartbeat],
    make_request: Callable[..., JobRequested],
    make_completed: Callable[..., RoundCompleted],
) -> None:
    deps = deps_with(store, clock, cap=central(3) * 1.001)
    bus = await fleet(deps, make_heartbeat)
    request = make_request(rounds=3, **private())
    await run(bus, deps, request)
    [first] = [e for e in of(bus, "round.started", request.job_id) if isinstance(e, RoundStarted)]
    # Meanwhile two clients spent elsewhere; with this job's round 1 (announced too), each is
    # at 3 releases: another round would pass the cap, and one client is left for min 2.
    job = request.job_id
    for client in first.selected_clients:
        announced = spent(client, 2)
        announced = announced.model_copy(update={
            "entries": 3,
            "mechanisms": [GaussianSpend(noise_multiplier=Z, sample_rate=1.0, steps=3)],
            "rounds": {"old-job": [1, 2], job: [1]},
        })  # fmt: skip
        await run(bus, deps, announced)

    await run(bus, deps, make_completed(job, 1), budget(job, 1, central(1)))

    [end] = [e for e in of(bus, "job.completed", job) if isinstance(e, JobCompleted)]
    assert (end.status, end.rounds_completed) == (JobStatus.BUDGET_EXHAUSTED, 1)
    assert end.guarantee is not None
    assert (end.guarantee.epsilon, end.guarantee.rounds) == (central(1), 1)
    assert (end.guarantee.accountant, end.guarantee.noise_multiplier) == ("rdp", Z)
    assert end.guarantee.clipping_norm == 1.0
    notes = [e.message for e in of(bus, "progress", job) if isinstance(e, Progress)]
    assert any("would pass the lifetime privacy cap" in n for n in notes)
    assert [e.round for e in of(bus, "round.started", job) if isinstance(e, RoundStarted)] == [1]


async def test_a_job_too_few_clients_can_afford_is_rejected_at_admission(
    store: FakeJobStore,
    clock: Any,
    make_heartbeat: Callable[..., TrainerHeartbeat],
    make_request: Callable[..., JobRequested],
) -> None:
    deps = deps_with(store, clock, cap=central(4) * 1.001)
    bus = await fleet(deps, make_heartbeat)
    await run(bus, deps, spent("t1", 2), spent("t2", 1))  # t1 can afford 2 more, t2 3, t3 4
    fits = make_request(rounds=3, **private())  # t2 and t3 can take every round: 2 = min
    too_long = make_request(rounds=4, **private())  # only t3 can

    await run(bus, deps, too_long)  # (a running job would reserve its round: this one first)
    await run(bus, deps, fits)

    assert of(bus, "job.rejected", fits.job_id) == []
    [rejected] = of(bus, "job.rejected", too_long.job_id)
    assert isinstance(rejected, JobRejected)
    [reason] = rejected.reasons
    assert (reason.code, reason.field) == ("lifetime_budget_exceeded", "spec.privacy")
    assert "2 of 3 trainer(s)" in reason.message
    assert "t1 (would reach" in reason.message
    assert "t2 (would reach" in reason.message
    assert "1 can afford it, the job needs 2" in reason.message


async def test_rounds_in_flight_are_reserved_until_the_accountant_lists_them(
    store: FakeJobStore,
    clock: Any,
    make_heartbeat: Callable[..., TrainerHeartbeat],
    make_request: Callable[..., JobRequested],
) -> None:
    deps = deps_with(store, clock, cap=(central(1) + central(2)) / 2)  # one release, not two
    bus = await fleet(deps, make_heartbeat)
    first = make_request(rounds=1, **private())
    await run(bus, deps, first)
    [busy] = [e for e in of(bus, "round.started", first.job_id) if isinstance(e, RoundStarted)]
    second = make_request(rounds=1, **private())

    await run(bus, deps, second)

    # The two clients training the first job's round are reserved: only one client is left.
    [rejected] = of(bus, "job.rejected", second.job_id)
    assert isinstance(rejected, JobRejected)
    assert rejected.reasons[0].code == "lifetime_budget_exceeded"
    for client in busy.selected_clients:
        assert f"{client} (would reach" in rejected.reasons[0].message


def test_an_accounted_round_is_not_reserved_twice() -> None:
    spec = JobSpec(
        mode=JobMode.FEDERATED, model="cnn", dataset="digits", rounds=2, min_clients=1,
        privacy=private()["privacy"],
    )  # fmt: skip
    listed = ClientSpend("a", "digits", 1, (RELEASE,), {"job-1": (1,)})
    running = [InFlight("job-1", 1, spec, ("a", "b"), Z), InFlight("job-2", 3, spec, ("a",), Z)]

    pending = pending_rounds(running, {"a": listed}, {}, dataset="digits")

    assert pending == {"b": [RELEASE], "a": [RELEASE]}  # job-2 round 3 only, for a
    lifetimes = Lifetimes(cap=10.0, spent={"a": listed}, pending=pending)
    assert lifetimes.projected("a", [RELEASE], DELTA) == pytest.approx(central(3), rel=1e-12)
    assert lifetimes.projected("c", [], DELTA) == 0.0
    assert pending_rounds(running, {}, {}, dataset="mnist") == {}


def test_a_local_dp_round_spends_dp_sgd_over_the_clients_records() -> None:
    spec = JobSpec(
        mode=JobMode.FEDERATED, model="cnn", dataset="digits", rounds=2, min_clients=1,
        training=TrainingConfig(local_epochs=2, batch_size=20, learning_rate=0.1),
        privacy=PrivacySpec(mode=PrivacyMode.LOCAL_DP, target_epsilon=4.0, delta=DELTA,
                            clipping_norm=1.0),
    )  # fmt: skip

    assert round_steps(spec, "a", 1.1, {"a": 100}) == GaussianSteps(1.1, 0.2, 10)
    assert round_steps(spec, "b", 1.1, {}) == GaussianSteps(1.1, 1.0, 2)  # records unknown


async def test_an_older_announcement_never_replaces_a_newer_one(store: FakeJobStore) -> None:
    newer = ClientSpend("a", "digits", 3, (GaussianSteps(Z, 1.0, 3),), {"j": (1, 2, 3)})
    older = ClientSpend("a", "digits", 2, (GaussianSteps(Z, 1.0, 2),), {"j": (1, 2)})

    await store.save_client_spend(newer)
    await store.save_client_spend(older)  # delivered late, from another partition

    assert await store.client_spends("digits") == {"a": newer}
    assert await store.client_spends("mnist") == {}
