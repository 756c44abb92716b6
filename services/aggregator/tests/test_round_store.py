"""One contract for every RoundStore: in memory, and PostgreSQL (needs `make up`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import asyncpg
import pytest

from fedbus.events import ModelRef, RoundCompleted, RoundStarted
from fedbus.settings import FedbusSettings, load_settings
from fedbus_aggregator.adapters.postgres import PostgresRoundStore
from fedbus_aggregator.rounds import RejectCode, RoundState, RoundStatus, UpdateRecord, UpdateStatus
from fedbus_aggregator.store import RoundStore

from .fakes import FakeRoundStore

REF = ModelRef(object_key="jobs/j/round-1/global/x", size_bytes=3, sha256="a" * 64)


@pytest.fixture(
    params=["memory", pytest.param("postgres", marks=pytest.mark.integration)],
)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RoundStore]:
    if request.param == "memory":
        yield FakeRoundStore()
        return
    pool = await asyncpg.create_pool(
        load_settings(FedbusSettings).postgres_dsn.get_secret_value(), min_size=1, max_size=2
    )
    try:
        yield await PostgresRoundStore.create(pool)
    finally:
        await pool.close()


@pytest.fixture
def job() -> str:
    return f"job-store-{uuid.uuid4().hex[:8]}"


def update(client: str, status: UpdateStatus = UpdateStatus.ACCEPTED) -> UpdateRecord:
    record = UpdateRecord(client, REF, 12, {"loss": 0.5}, UpdateStatus.PENDING)
    if status is UpdateStatus.REJECTED:
        return record.rejected(RejectCode.INTEGRITY, "hash differs")
    return record.accepted() if status is UpdateStatus.ACCEPTED else record


def result(event: RoundStarted) -> RoundCompleted:
    return RoundCompleted.create(
        source="aggregator",
        job_id=event.job_id,
        round=event.round,
        global_model=REF,
        participants=["a"],
        total_samples=12,
        metrics={"accuracy": 0.9},
    )


async def test_round_and_updates_round_trip(
    store: RoundStore, job: str, started: Callable[..., RoundStarted]
) -> None:
    event = started(job_id=job)
    await store.save_started(RoundState.open(event))
    await store.record_update(job, 1, update("a"))
    await store.record_update(job, 1, update("b", UpdateStatus.REJECTED))

    state = await store.get(job, 1)

    assert state is not None
    assert state.started == event
    assert state.status is RoundStatus.OPEN
    assert state.updates["a"] == update("a")
    assert state.updates["b"].code is RejectCode.INTEGRITY
    assert await store.get(job, 2) is None


async def test_updates_can_wait_for_their_round(store: RoundStore, job: str) -> None:
    await store.record_update(job, 1, update("a", UpdateStatus.PENDING))

    assert await store.get(job, 1) is None
    assert (await store.updates(job, 1))["a"].status is UpdateStatus.PENDING


async def test_close_applies_once_and_keeps_the_event(
    store: RoundStore, job: str, started: Callable[..., RoundStarted]
) -> None:
    state = RoundState.open(started(job_id=job))
    await store.save_started(state)
    done = result(state.started)

    first = await store.close(state, status=RoundStatus.AGGREGATED, result=done, server_state=REF)
    second = await store.close(state, status=RoundStatus.AGGREGATED, result=result(state.started))

    stored = await store.get(job, 1)
    assert (first, second) == (True, False)
    assert stored is not None
    assert stored.result == done
    assert stored.server_state == REF
    assert await store.previous_server_state(job, 2) == REF
    assert await store.previous_server_state(job, 1) is None


async def test_close_under_an_older_version_does_nothing(
    store: RoundStore, job: str, started: Callable[..., RoundStarted]
) -> None:
    first = RoundState.open(started(job_id=job)).with_update(update("a"))
    await store.save_started(first)
    retry = first.restarted(started(job_id=job, clients=("b", "c")))
    await store.save_started(retry)

    assert not await store.close(first, status=RoundStatus.EXPIRED)
    stored = await store.get(job, 1)
    assert stored is not None
    assert stored.version == 2
    assert stored.selected == ("b", "c")
    assert stored.updates == {}  # "a" is no longer selected


async def test_due_lists_late_open_rounds_and_unpublished_results(
    store: RoundStore, job: str, started: Callable[..., RoundStarted]
) -> None:
    late = RoundState.open(started(job_id=job, round_=1, deadline_s=10))
    later = RoundState.open(started(job_id=job, round_=2, deadline_s=100))
    done = RoundState.open(started(job_id=job, round_=3, deadline_s=100))
    for state in (late, later, done):
        await store.save_started(state)
    await store.close(done, status=RoundStatus.AGGREGATED, result=result(done.started))
    now = late.deadline + timedelta(seconds=1)

    due = [key for key in await store.due(now) if key[0] == job]
    await store.mark_published(job, 3)
    after = [key for key in await store.due(now) if key[0] == job]

    assert due == [(job, 1), (job, 3)]
    assert after == [(job, 1)]
