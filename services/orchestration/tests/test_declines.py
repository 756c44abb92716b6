"""A site that declines a round (``round.declined``): left out, the round restarted or failed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

import pytest

from fedbus.bus import InMemoryBus
from fedbus.events import (
    DeclineReason,
    JobFailed,
    JobRequested,
    RoundCompleted,
    RoundDeclined,
    RoundStarted,
    TrainerHeartbeat,
)
from fedbus_orchestration.adapters.rows import job_args, update_args
from fedbus_orchestration.deps import Deps
from fedbus_orchestration.handlers import HANDLERS
from fedbus_orchestration.state import JobState, Policy

from .fakes import FakeClock, FakeJobStore

EPSILON = DeclineReason(
    code="epsilon_too_large",
    message="the job asks for epsilon 8 (privacy.target_epsilon, at delta 1e-05); "
    "this site accepts at most 1 (max_epsilon)",
)
DAILY = DeclineReason(code="daily_round_limit", message="at most 1 round in any 24 hours")


@pytest.fixture
def deps(store: FakeJobStore, clock: FakeClock) -> Deps:
    return Deps(
        store=store, policy=Policy(max_round_retries=2, round_grace_seconds=1),
        clock=clock,
    )  # fmt: skip


async def started(
    bus: InMemoryBus, deps: Deps, trainers: list[str], heartbeat: Callable[..., TrainerHeartbeat],
    request: JobRequested,
) -> RoundStarted:  # fmt: skip
    await bus.publish_many(heartbeat(t) for t in trainers)
    await bus.publish(request)
    await bus.drain(HANDLERS.bind(deps))
    first = bus.events("round.started")[-1]
    assert isinstance(first, RoundStarted)
    return first


def decline(
    rs: RoundStarted, client: str, *reasons: DeclineReason, retry_after_s: int | None = None,
    time: datetime | None = None,
) -> RoundDeclined:  # fmt: skip
    return RoundDeclined.create(
        source="trainer", job_id=rs.job_id, time=time, round=rs.round, client_id=client,
        started_event_id=rs.event_id, reasons=list(reasons or (EPSILON,)),
        retry_after_s=retry_after_s,
    )  # fmt: skip


def selections(bus: InMemoryBus) -> list[tuple[int, list[str]]]:
    return [
        (e.round, e.selected_clients)
        for e in bus.events("round.started")
        if isinstance(e, RoundStarted)
    ]


async def test_a_declined_round_starts_again_at_once_without_the_site(
    deps: Deps, store: FakeJobStore, make_heartbeat: Callable[..., TrainerHeartbeat],
    make_request: Callable[..., JobRequested], make_completed: Callable[..., RoundCompleted],
) -> None:  # fmt: skip
    bus = InMemoryBus()
    request = make_request(rounds=2, clients_per_round=1, min_clients=1)
    first = await started(bus, deps, ["t1", "t2", "t3"], make_heartbeat, request)
    (site,) = first.selected_clients

    await bus.publish(decline(first, site))
    await bus.drain(HANDLERS.bind(deps))

    # No wait for the deadline: attempt 2 of round 1, from the sites that did not decline.
    again = bus.events("round.started")[-1]
    assert isinstance(again, RoundStarted)
    assert again.round == 1
    assert again.selected_clients != [site]
    job = store.jobs[request.job_id]
    assert (job.round, job.attempt, job.declined) == (1, 2, {site: None})
    # A decline for the model or the privacy holds for the rest of the job.
    await bus.publish(make_completed(request.job_id, 1))
    await bus.drain(HANDLERS.bind(deps))
    assert [sel for _, sel in selections(bus)][-1] != [site]
    assert bus.events("job.failed") == []


async def test_with_no_other_site_the_job_fails_naming_the_decline(
    deps: Deps, make_heartbeat: Callable[..., TrainerHeartbeat],
    make_request: Callable[..., JobRequested],
) -> None:  # fmt: skip
    bus = InMemoryBus()
    request = make_request(clients_per_round=1, min_clients=1)
    first = await started(bus, deps, ["t1"], make_heartbeat, request)

    await bus.publish(decline(first, "t1"))
    await bus.drain(HANDLERS.bind(deps))

    (failed,) = bus.events("job.failed")
    assert isinstance(failed, JobFailed)
    assert failed.code == "clients_declined"
    assert "t1 declined round 1: epsilon_too_large" in failed.message
    assert "epsilon 8" in failed.message
    assert "at most 1" in failed.message
    assert len(bus.events("round.started")) == 1


async def test_a_round_that_can_still_close_keeps_running(
    deps: Deps, store: FakeJobStore, make_heartbeat: Callable[..., TrainerHeartbeat],
    make_request: Callable[..., JobRequested], make_completed: Callable[..., RoundCompleted],
) -> None:  # fmt: skip
    bus = InMemoryBus()
    request = make_request(rounds=2, clients_per_round=3, min_clients=2)
    first = await started(bus, deps, ["t1", "t2", "t3"], make_heartbeat, request)

    await bus.publish(decline(first, "t2"))
    await bus.drain(HANDLERS.bind(deps))

    assert len(bus.events("round.started")) == 1  # two of three still train round 1
    assert store.jobs[request.job_id].declined == {"t2": None}
    await bus.publish(make_completed(request.job_id, 1))
    await bus.drain(HANDLERS.bind(deps))
    assert selections(bus)[-1] == (2, ["t1", "t3"])


async def test_a_daily_limit_leaves_the_site_out_only_while_it_holds(
    deps: Deps, store: FakeJobStore, clock: FakeClock,
    make_heartbeat: Callable[..., TrainerHeartbeat], make_request: Callable[..., JobRequested],
    make_completed: Callable[..., RoundCompleted],
) -> None:  # fmt: skip
    bus = InMemoryBus()
    request = make_request(rounds=3, clients_per_round=2, min_clients=1)
    first = await started(bus, deps, ["t1", "t2"], make_heartbeat, request)

    await bus.publish(decline(first, "t1", DAILY, retry_after_s=3600, time=clock()))
    await bus.drain(HANDLERS.bind(deps))
    await bus.publish(make_completed(request.job_id, 1))
    await bus.drain(HANDLERS.bind(deps))
    assert selections(bus)[-1] == (2, ["t2"])

    clock.advance(3601)
    await bus.publish_many(make_heartbeat(t) for t in ("t1", "t2"))
    await bus.publish(make_completed(request.job_id, 2))
    await bus.drain(HANDLERS.bind(deps))
    assert selections(bus)[-1] == (3, ["t1", "t2"])


async def test_a_redelivered_or_late_decline_changes_nothing_more(
    deps: Deps, store: FakeJobStore, make_heartbeat: Callable[..., TrainerHeartbeat],
    make_request: Callable[..., JobRequested],
) -> None:  # fmt: skip
    bus = InMemoryBus()
    request = make_request(clients_per_round=1, min_clients=1)
    first = await started(bus, deps, ["t1", "t2", "t3"], make_heartbeat, request)
    (site,) = first.selected_clients
    event = decline(first, site)

    await bus.publish(event)
    await bus.publish(event)
    await bus.drain(HANDLERS.bind(deps))

    # The redelivery re-sends what the first delivery emitted (same ids), nothing new.
    assert len({e.event_id for e in bus.events("round.started")}) == 2
    job = store.jobs[request.job_id]
    assert job.attempt == 2
    # A later daily-limit decline never shortens a decline for the whole job.
    late = decline(first, site, DAILY, retry_after_s=10)
    await bus.publish(late)
    await bus.drain(HANDLERS.bind(deps))
    assert store.jobs[request.job_id].declined == {site: None}
    assert len({e.event_id for e in bus.events("round.started")}) == 2
    assert store.jobs[request.job_id].state is JobState.RUNNING


def test_the_declines_travel_in_the_postgres_rows(
    make_request: Callable[..., JobRequested], clock: FakeClock
) -> None:
    from fedbus_orchestration.adapters.rows import JOB_COLUMNS
    from fedbus_orchestration.jobs import accept

    job = accept(make_request(), eligible=["a", "b"], now=clock()).job
    job = replace(job, declined={"a": None, "b": clock()})

    args = job_args(job)
    columns = [c.strip() for c in JOB_COLUMNS.split(",")]

    assert len(args) == len(columns)
    declined = args[columns.index("declined")]
    assert '"a": null' in declined
    assert clock().isoformat() in declined
    assert update_args(job)[-1] == declined
