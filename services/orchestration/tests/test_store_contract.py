"""One contract for every JobStore: the in-memory fake and PostgreSQL behave the same.

The PostgreSQL case needs the local stack (`make up`) and is marked ``integration``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from fedbus.events import Event, JobRequested, RoundCompleted, TrainerStatus
from fedbus.privacy import GaussianSteps
from fedbus_orchestration.adapters import PostgresJobStore
from fedbus_orchestration.jobs import accept, after_round
from fedbus_orchestration.lifetime import ClientSpend
from fedbus_orchestration.selection import TrainerInfo
from fedbus_orchestration.state import JobState, Policy
from fedbus_orchestration.store import ConcurrentUpdateError, JobStore

from .fakes import FakeJobStore


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[JobStore]:
    if request.param == "memory":
        yield FakeJobStore()
        return
    import asyncpg

    from fedbus.settings import FedbusSettings, load_settings

    settings = load_settings(FedbusSettings)
    pool = await asyncpg.create_pool(settings.postgres_dsn.get_secret_value(), min_size=1,
                                     max_size=2)  # fmt: skip
    try:
        yield await PostgresJobStore.create(pool)
    finally:
        await pool.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_a_saved_job_reads_back_equal_with_its_events(
    store: JobStore, make_request: Callable[..., JobRequested], clock: Callable[[], datetime],
) -> None:  # fmt: skip
    request = make_request(job_id=unique("job"), key=unique("key"))
    t = accept(request, eligible=["a", "b"], now=clock())

    await store.record(cause_id=request.event_id, events=t.events, job=t.job)

    stored = await store.get(request.job_id)
    assert stored == replace(t.job, version=1)
    assert await store.find_by_idempotency_key("acme", request.idempotency_key or "") == stored
    assert (
        await store.find_by_idempotency_key("other-tenant", request.idempotency_key or "") is None
    )
    assert await store.emitted(request.event_id) == t.events
    assert await store.emitted(unique("never")) is None
    assert await store.get(unique("missing")) is None


async def test_updates_are_conditional_on_the_version_read(
    store: JobStore, make_request: Callable[..., JobRequested],
    make_completed: Callable[..., RoundCompleted], clock: Callable[[], datetime],
) -> None:  # fmt: skip
    request = make_request(job_id=unique("job"))
    t = accept(request, eligible=["a", "b"], now=clock())
    await store.record(cause_id=request.event_id, events=t.events, job=t.job)
    loaded = await store.get(request.job_id)
    assert loaded is not None
    done = make_completed(request.job_id, 1)
    nxt = after_round(loaded, done, eligible=["a", "b"], now=clock(), policy=Policy())

    await store.record(cause_id=done.event_id, events=nxt.events, job=nxt.job)

    with pytest.raises(ConcurrentUpdateError):  # a second writer that read version 1
        await store.record(cause_id=unique("cause"), events=[], job=nxt.job)
    with pytest.raises(ConcurrentUpdateError):  # the same job id inserted again
        await store.record(cause_id=unique("cause"), events=[], job=t.job)
    with pytest.raises(ConcurrentUpdateError):  # the same cause recorded twice
        await store.record(cause_id=done.event_id, events=[])
    stored = await store.get(request.job_id)
    assert stored is not None
    assert (stored.round, stored.version) == (2, 2)
    assert stored.global_model == done.global_model
    assert stored.deadline == nxt.job.deadline


async def test_declines_are_saved_and_updated(
    store: JobStore, make_request: Callable[..., JobRequested], clock: Callable[[], datetime],
) -> None:  # fmt: skip
    job = accept(make_request(job_id=unique("job")), eligible=["a", "b"], now=clock()).job
    until = clock() + timedelta(hours=3)
    await store.record(cause_id=unique("c"), events=[], job=replace(job, declined={"a": None}))
    first = await store.get(job.job_id)
    assert first is not None
    assert first.declined == {"a": None}

    await store.record(cause_id=unique("c"), events=[],
                       job=replace(first, declined={"a": None, "b": until}))  # fmt: skip

    second = await store.get(job.job_id)
    assert second is not None
    assert second.declined == {"a": None, "b": until}


async def test_running_lists_only_running_jobs(
    store: JobStore, make_request: Callable[..., JobRequested], clock: Callable[[], datetime],
) -> None:  # fmt: skip
    running = accept(make_request(job_id=unique("job")), eligible=["a", "b"], now=clock()).job
    ended = replace(running, job_id=unique("job"), state=JobState.CANCELLED)
    await store.record(cause_id=unique("c"), events=[], job=running)
    await store.record(cause_id=unique("c"), events=[], job=ended)

    ids = {job.job_id for job in await store.running()}

    assert running.job_id in ids
    assert ended.job_id not in ids


async def test_unpublished_events_are_published_once_in_order(
    store: JobStore, make_request: Callable[..., JobRequested], clock: Callable[[], datetime],
) -> None:  # fmt: skip
    request = make_request(job_id=unique("job"))
    t = accept(request, eligible=["a", "b"], now=clock())
    await store.record(cause_id=unique("deadline"), events=t.events, job=t.job, published=False)
    out: list[Event] = []

    async def publish(events: list[Event]) -> None:
        out.extend(events)

    while await store.publish_pending(publish):  # other tests' rows may be pending too
        pass

    assert [e for e in out if e.job_id == request.job_id] == t.events
    assert await store.publish_pending(publish) == 0


async def test_a_trainer_keeps_its_newest_heartbeat(
    store: JobStore, clock: Callable[[], datetime]
) -> None:
    dataset, cid = unique("data"), unique("trainer")

    def info(age_s: float, status: TrainerStatus) -> TrainerInfo:
        return TrainerInfo(
            client_id=cid, datasets={dataset: 5}, device="cpu", status=status,
            last_seen=clock() - timedelta(seconds=age_s), interval_seconds=2,
        )  # fmt: skip

    await store.save_trainer(info(0, TrainerStatus.BUSY))
    await store.save_trainer(info(10, TrainerStatus.IDLE))  # an older one, delivered late

    assert await store.trainers(dataset) == [info(0, TrainerStatus.BUSY)]
    assert await store.trainers(unique("other-data")) == []


async def test_a_dp_job_waiting_for_its_budget_reads_back_equal(
    store: JobStore, make_request: Callable[..., JobRequested], clock: Callable[[], datetime],
) -> None:  # fmt: skip
    from fedbus_orchestration.state import Budget

    request = make_request(job_id=unique("job"))
    t = accept(request, eligible=["a", "b"], now=clock())
    await store.record(cause_id=request.event_id, events=t.events, job=t.job)
    stored = await store.get(request.job_id)
    assert stored is not None
    spent = Budget(round=1, epsilon_spent=2.5, delta=1e-5, exhausted=False)
    waiting = replace(stored, state=JobState.AWAITING_BUDGET, noise_multiplier=1.3, budget=spent)

    await store.record(cause_id=unique("budget"), events=[], job=waiting)

    assert await store.get(request.job_id) == replace(waiting, version=waiting.version + 1)
    # Waiting for a budget has a deadline too: the watcher must see the job.
    assert request.job_id in {j.job_id for j in await store.running()}


async def test_a_clients_lifetime_spend_keeps_the_announcement_with_most_entries(
    store: JobStore,
) -> None:
    client, dataset = unique("client"), unique("dataset")
    two = ClientSpend(client, dataset, 2, (GaussianSteps(1.5, 1.0, 2),), {"j1": (1, 2)})
    three = ClientSpend(
        client, dataset, 3, (GaussianSteps(1.1, 0.2, 10), GaussianSteps(1.5, 1.0, 2)),
        {"j1": (1, 2), "j2": (1,)},
    )  # fmt: skip

    await store.save_client_spend(two)
    await store.save_client_spend(three)
    await store.save_client_spend(two)  # late, from another partition

    assert await store.client_spends(dataset) == {client: three}
    assert client not in await store.client_spends(unique("other"))
