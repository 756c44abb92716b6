"""Handlers over the in-memory bus and store: the whole job flow without Kafka or PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fedbus.bus import InMemoryBus
from fedbus.events import (
    JobCancelRequested,
    JobCompleted,
    JobFailed,
    JobRejected,
    JobRequested,
    Progress,
    RoundCompleted,
    RoundStarted,
    Strategy,
    StrategySpec,
    TrainerHeartbeat,
)
from fedbus_orchestration.deps import Deps
from fedbus_orchestration.handlers import (
    HANDLERS,
    on_job_requested,
    on_round_completed,
)
from fedbus_orchestration.state import JobState, Policy
from fedbus_orchestration.watcher import check_deadlines

from .fakes import FakeJobStore


@pytest.fixture
def deps(store: FakeJobStore, clock: Any) -> Deps:
    return Deps(
        store=store, policy=Policy(max_round_retries=1, round_grace_seconds=1),
        clock=clock,
    )  # fmt: skip


@pytest.fixture
async def bus(deps: Deps, make_heartbeat: Callable[..., TrainerHeartbeat]) -> InMemoryBus:
    bus = InMemoryBus()
    await bus.publish_many(make_heartbeat(cid) for cid in ("t1", "t2", "t3"))
    await bus.drain(HANDLERS.bind(deps))
    return bus


def rounds(bus: InMemoryBus, job_id: str) -> list[tuple[int, list[str]]]:
    return [
        (e.round, e.selected_clients)
        for e in bus.events("round.started")
        if isinstance(e, RoundStarted) and e.job_id == job_id
    ]


async def test_a_job_runs_round_by_round_to_completion(
    bus: InMemoryBus, deps: Deps, make_request: Callable[..., JobRequested],
    make_completed: Callable[..., RoundCompleted],
) -> None:  # fmt: skip
    request = make_request(rounds=2)
    await bus.publish(request)
    await bus.drain(HANDLERS.bind(deps))

    assert [e.job_id for e in bus.events("job.accepted")] == [request.job_id]
    assert [(r, len(sel)) for r, sel in rounds(bus, request.job_id)] == [(1, 2)]
    assert set(rounds(bus, request.job_id)[0][1]) <= {"t1", "t2", "t3"}

    for rnd in (1, 2):
        await bus.publish(make_completed(request.job_id, rnd))
        await bus.drain(HANDLERS.bind(deps))

    assert [r for r, _ in rounds(bus, request.job_id)] == [1, 2]
    (completed,) = bus.events("job.completed")
    assert isinstance(completed, JobCompleted)
    assert completed.rounds_completed == 2
    progress = [e for e in bus.events("progress") if e.job_id == request.job_id]
    assert all(isinstance(e, Progress) for e in progress)
    phases = [e.phase.value for e in progress if isinstance(e, Progress)]
    assert phases == ["scheduling", "scheduling", "completed"]


async def test_a_bad_request_is_rejected_with_every_reason(
    bus: InMemoryBus, deps: Deps, make_request: Callable[..., JobRequested],
) -> None:  # fmt: skip
    await bus.publish(make_request(model="nope", dataset="nobody-has-it"))
    await bus.drain(HANDLERS.bind(deps))

    (rejected,) = bus.events("job.rejected")
    assert isinstance(rejected, JobRejected)
    assert [r.code for r in rejected.reasons] == ["unknown_dataset"]
    assert bus.events("job.accepted") == []
    assert bus.events("round.started") == []


async def test_a_fedprox_request_without_proximal_mu_is_rejected_naming_the_option(
    bus: InMemoryBus, deps: Deps, make_request: Callable[..., JobRequested],
) -> None:  # fmt: skip
    # A request straight on the bus never passed the gateway's check: orchestration refuses it.
    await bus.publish(make_request(strategy=StrategySpec(name=Strategy.FEDPROX)))
    await bus.drain(HANDLERS.bind(deps))

    (rejected,) = bus.events("job.rejected")
    assert isinstance(rejected, JobRejected)
    assert [(r.code, r.field) for r in rejected.reasons] == [
        ("missing_field", "spec.strategy.options.proximal_mu")
    ]
    assert bus.events("job.accepted") == []
    assert bus.events("round.started") == []


async def test_a_repeated_idempotency_key_starts_no_second_job(
    bus: InMemoryBus, deps: Deps, store: FakeJobStore,
    make_request: Callable[..., JobRequested],
) -> None:  # fmt: skip
    await bus.publish(make_request(key="nightly"))
    await bus.publish(make_request(key="nightly"))
    await bus.publish(make_request(key="nightly", tenant="other"))
    await bus.drain(HANDLERS.bind(deps))

    assert len(bus.events("job.accepted")) == 2  # one per tenant
    assert len(store.jobs) == 2


async def test_a_redelivered_request_re_emits_the_same_events(
    bus: InMemoryBus, deps: Deps, make_request: Callable[..., JobRequested],
) -> None:  # fmt: skip
    request = make_request()

    first = await on_job_requested(request, deps=deps)
    again = await on_job_requested(request, deps=deps)  # crash before the offset commit

    assert [e.event_id for e in again] == [e.event_id for e in first]
    assert len(first) == 3


async def test_a_redelivered_round_result_does_not_start_a_round_twice(
    bus: InMemoryBus, deps: Deps, store: FakeJobStore,
    make_request: Callable[..., JobRequested], make_completed: Callable[..., RoundCompleted],
) -> None:  # fmt: skip
    request = make_request(rounds=3)
    await on_job_requested(request, deps=deps)
    done = make_completed(request.job_id, 1)
    first = await on_round_completed(done, deps=deps)

    same_event = await on_round_completed(done, deps=deps)
    same_round = await on_round_completed(make_completed(request.job_id, 1), deps=deps)

    assert [e.event_id for e in same_event] == [e.event_id for e in first]
    assert same_round == []
    job = store.jobs[request.job_id]
    assert (job.round, job.attempt, job.rounds_completed) == (2, 1, 1)


async def test_the_watcher_retries_an_overdue_round_then_fails_the_job(
    bus: InMemoryBus, deps: Deps, store: FakeJobStore, clock: Any,
    make_request: Callable[..., JobRequested], make_heartbeat: Callable[..., TrainerHeartbeat],
) -> None:  # fmt: skip
    request = make_request(round_deadline_seconds=10)
    await bus.publish(request)
    await bus.drain(HANDLERS.bind(deps))

    clock.advance(10.5)  # past the deadline, within the grace second
    assert await check_deadlines(deps) == 0
    clock.advance(1)
    await bus.publish_many(make_heartbeat(cid) for cid in ("t1", "t2", "t3"))
    await bus.drain(HANDLERS.bind(deps))
    assert await check_deadlines(deps) == 1
    clock.advance(11.5)
    assert await check_deadlines(deps) == 1
    await store.publish_pending(bus.publish_many)

    assert [r for r, _ in rounds(bus, request.job_id)] == [1, 1]
    (failed,) = bus.events("job.failed")
    assert isinstance(failed, JobFailed)
    assert failed.code == "too_few_clients"
    assert store.jobs[request.job_id].state is JobState.FAILED
    assert await check_deadlines(deps) == 0


async def test_cancel_ends_the_job_and_later_results_are_ignored(
    bus: InMemoryBus, deps: Deps, make_request: Callable[..., JobRequested],
    make_completed: Callable[..., RoundCompleted],
) -> None:  # fmt: skip
    request = make_request()
    await bus.publish(request)
    await bus.publish(JobCancelRequested.create(source="gateway", job_id=request.job_id,
                                                tenant="acme", requested_by="bob"))  # fmt: skip
    await bus.publish(make_completed(request.job_id, 1))
    await bus.drain(HANDLERS.bind(deps))

    (completed,) = bus.events("job.completed")
    assert isinstance(completed, JobCompleted)
    assert completed.status.value == "cancelled"
    assert len(rounds(bus, request.job_id)) == 1


async def test_events_of_unknown_jobs_are_ignored(
    bus: InMemoryBus, deps: Deps, make_completed: Callable[..., RoundCompleted],
) -> None:  # fmt: skip
    assert await on_round_completed(make_completed("job-nobody-knows", 1), deps=deps) == []


async def test_stale_trainers_are_not_selected(
    bus: InMemoryBus, deps: Deps, clock: Any, make_request: Callable[..., JobRequested],
    make_heartbeat: Callable[..., TrainerHeartbeat],
) -> None:  # fmt: skip
    clock.advance(7)  # t1..t3 said they beat every 2 s: gone after 6 s
    await bus.publish(make_heartbeat("fresh-1"))
    await bus.publish(make_heartbeat("fresh-2"))
    request = make_request()
    await bus.publish(request)
    await bus.drain(HANDLERS.bind(deps))

    assert rounds(bus, request.job_id) == [(1, ["fresh-1", "fresh-2"])]


async def test_the_order_heartbeats_arrive_in_does_not_change_who_is_selected(
    clock: Any, make_request: Callable[..., JobRequested],
    make_heartbeat: Callable[..., TrainerHeartbeat],
) -> None:  # fmt: skip
    trainers = [f"t{i:02d}" for i in range(12)]
    request = make_request(job_id="job-order", clients_per_round=3, seed=11)
    chosen = []
    for arrival in (trainers, trainers[::-1], trainers[5:] + trainers[:5]):
        deps = Deps(store=FakeJobStore(), clock=clock)
        bus = InMemoryBus()
        await bus.publish_many(make_heartbeat(cid) for cid in arrival)
        await bus.publish(request)
        await bus.drain(HANDLERS.bind(deps))
        chosen.append(rounds(bus, request.job_id))

    assert chosen[0] == chosen[1] == chosen[2]
    assert [len(sel) for _, sel in chosen[0]] == [3]
