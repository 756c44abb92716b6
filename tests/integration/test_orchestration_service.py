"""The orchestration process against the real Kafka and PostgreSQL: accept, rounds, completion,
rejection, and deadline retries (the restart test is in test_orchestration_restart.py)."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from fedbus.bus import EventProducer, ensure_topics
from fedbus.events import (
    Event,
    JobCompleted,
    JobFailed,
    JobMode,
    JobRejected,
    JobRequested,
    JobSpec,
    ModelRef,
    RoundCompleted,
    RoundStarted,
    Strategy,
    StrategySpec,
    TrainerHeartbeat,
    TrainerStatus,
)
from fedbus.settings import FedbusSettings
from fedbus_orchestration import HANDLERS

from .announce import announced
from .harness import EventWatcher, ServiceProcess, fresh_group, unique

CONSUMED = HANDLERS.topics
WATCHED = ["job.accepted", "job.rejected", "round.started", "job.completed", "job.failed"]


class Orchestration:
    """Starts (and restarts) one orchestration process with its own consumer group."""

    def __init__(self, settings: FedbusSettings, log_dir: Path) -> None:
        self.settings, self.log_dir = settings, log_dir
        self.group = unique("orch-test")
        self.procs: list[ServiceProcess] = []

    def start(self) -> ServiceProcess:
        env = {
            "FEDBUS_CONSUMER_GROUP": self.group,
            "FEDBUS_ROUND_GRACE_SECONDS": "1",
            "FEDBUS_MAX_ROUND_RETRIES": "1",
            "FEDBUS_DEADLINE_CHECK_SECONDS": "0.5",
        }
        name = f"orchestration-{len(self.procs)}"
        proc = ServiceProcess.start(name, "fedbus_orchestration", log_dir=self.log_dir, env=env)
        self.procs.append(proc)
        _wait_ready(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop()


def _wait_ready(proc: ServiceProcess, limit_s: float = 90) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert proc.alive(), f"orchestration exited:\n{proc.text()[-3000:]}"
        found = re.search(r"ops server on [\d.]+:(\d+)", proc.text())
        if found:
            try:
                ready = httpx.get(f"http://127.0.0.1:{found[1]}/readyz", timeout=2)
                if ready.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.3)
    raise TimeoutError(f"orchestration not ready in {limit_s}s:\n{proc.text()[-3000:]}")


@pytest.fixture(scope="module")
def orchestration(
    settings: FedbusSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Orchestration]:
    asyncio.run(ensure_topics(settings))
    orch = Orchestration(settings, tmp_path_factory.mktemp("orchestration"))
    asyncio.run(fresh_group(settings, orch.group, CONSUMED))
    try:
        orch.start()
        yield orch
    finally:
        orch.stop_all()


@pytest.fixture
async def producer(settings: FedbusSettings) -> AsyncIterator[EventProducer]:
    async with EventProducer(settings, client_id="orchestration-test") as prod:
        yield prod


async def _announce_trainers(settings: FedbusSettings, producer: EventProducer, dataset: str,
                             ids: list[str]) -> None:  # fmt: skip
    """Heartbeats for ``ids``; returns once orchestration has stored all of them."""
    await producer.publish_many(
        TrainerHeartbeat.create(
            source="trainer", job_id="", client_id=cid, device="cpu",
            **announced(dataset, 100), status=TrainerStatus.IDLE,
            capacity=1, interval_seconds=60,
        )
        for cid in ids
    )  # fmt: skip
    conn = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        for _ in range(200):
            known = await conn.fetchval(  # these trainers only: others may hold it too
                "SELECT count(*) FROM orchestration_trainers"
                " WHERE datasets ? $1 AND client_id = ANY($2::text[])",
                dataset, ids,
            )  # fmt: skip
            if known == len(ids):
                return
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    raise TimeoutError(f"orchestration did not store the heartbeats of {dataset}")


def _request(dataset: str, **spec: object) -> JobRequested:
    fields: dict[str, object] = {
        "mode": JobMode.FEDERATED, "model": "cnn", "dataset": dataset, "rounds": 2,
        "clients_per_round": 2, "min_clients": 2, "round_deadline_seconds": 300, "seed": 5,
    }  # fmt: skip
    fields.update(spec)
    return JobRequested.create(source="it-upstream", job_id=unique("job-orch"), tenant="acme",
                               spec=JobSpec(**fields))  # type: ignore[arg-type]  # fmt: skip


def _completed(job_id: str, rnd: int, loss: float = 1.0) -> RoundCompleted:
    sha = f"{rnd:064x}"
    return RoundCompleted.create(
        source="aggregator", job_id=job_id, round=rnd, participants=["a", "b"], total_samples=200,
        global_model=ModelRef(object_key=f"jobs/{job_id}/round-{rnd}/global/{sha}", size_bytes=8,
                              sha256=sha),
        metrics={"loss": loss, "accuracy": 0.6},
    )  # fmt: skip


def _is(cls: type[Event], job_id: str, **fields: object) -> Callable[[Event], bool]:
    def match(event: Event) -> bool:
        if not isinstance(event, cls) or event.job_id != job_id:
            return False
        return all(getattr(event, k) == v for k, v in fields.items())

    return match


async def test_a_job_runs_its_rounds_and_completes(
    settings: FedbusSettings, orchestration: Orchestration, producer: EventProducer,
) -> None:  # fmt: skip
    dataset, ids = unique("digits"), [unique("client") for _ in range(3)]
    await _announce_trainers(settings, producer, dataset, ids)
    request = _request(dataset)
    async with EventWatcher(settings, WATCHED) as watch:
        await producer.publish(request)
        accepted = await watch.wait_for(lambda e: e.type == "job.accepted"
                                        and e.job_id == request.job_id, limit_s=60)  # fmt: skip
        first = await watch.wait_for(_is(RoundStarted, request.job_id, round=1), limit_s=30)
        assert isinstance(first, RoundStarted)
        expected = sorted(random.Random("5:1:1").sample(sorted(ids), 2))
        assert first.selected_clients == expected
        assert first.global_model is None
        assert (first.min_clients, first.dataset, first.seed) == (2, dataset, 5)
        assert accepted.traceparent.split("-")[1] == request.traceparent.split("-")[1]

        r1 = _completed(request.job_id, 1)
        await producer.publish(r1)
        second = await watch.wait_for(_is(RoundStarted, request.job_id, round=2), limit_s=30)
        assert isinstance(second, RoundStarted)
        assert second.global_model == r1.global_model

        r2 = _completed(request.job_id, 2, loss=0.5)
        await producer.publish(r2)
        done = await watch.wait_for(_is(JobCompleted, request.job_id), limit_s=30)
        assert isinstance(done, JobCompleted)
        assert (done.status.value, done.rounds_completed) == ("completed", 2)
        assert done.final_model == r2.global_model


async def test_an_unknown_model_is_rejected_with_the_reason(
    settings: FedbusSettings, orchestration: Orchestration, producer: EventProducer,
) -> None:  # fmt: skip
    dataset = unique("digits")
    await _announce_trainers(settings, producer, dataset, [unique("client")])
    request = _request(dataset, model="no-such-model", min_clients=1)
    async with EventWatcher(settings, WATCHED) as watch:
        await producer.publish(request)
        rejected = await watch.wait_for(_is(JobRejected, request.job_id), limit_s=60)

    assert isinstance(rejected, JobRejected)
    assert rejected.request_event_id == request.event_id
    assert [(r.code, r.field) for r in rejected.reasons] == [("unknown_model", "spec.model")]
    assert not [e for e in watch.seen if e.job_id == request.job_id and e.type != "job.rejected"]


async def test_a_fedprox_job_without_proximal_mu_on_kafka_is_rejected_naming_the_option(
    settings: FedbusSettings, orchestration: Orchestration, producer: EventProducer,
) -> None:  # fmt: skip
    # Published straight on Kafka, it never met the gateway's check: orchestration runs it.
    dataset = unique("digits")
    await _announce_trainers(settings, producer, dataset, [unique("client")])
    request = _request(dataset, min_clients=1, strategy=StrategySpec(name=Strategy.FEDPROX))
    async with EventWatcher(settings, WATCHED) as watch:
        await producer.publish(request)
        rejected = await watch.wait_for(_is(JobRejected, request.job_id), limit_s=60)

    assert isinstance(rejected, JobRejected)
    assert [(r.code, r.field) for r in rejected.reasons] == [
        ("missing_field", "spec.strategy.options.proximal_mu")
    ]
    assert not [e for e in watch.seen if e.job_id == request.job_id and e.type != "job.rejected"]


async def test_an_overdue_round_is_retried_then_the_job_fails(
    settings: FedbusSettings, orchestration: Orchestration, producer: EventProducer,
) -> None:  # fmt: skip
    dataset, ids = unique("digits"), [unique("client") for _ in range(3)]
    await _announce_trainers(settings, producer, dataset, ids)
    request = _request(dataset, round_deadline_seconds=2)
    async with EventWatcher(settings, WATCHED) as watch:
        await producer.publish(request)
        failed = await watch.wait_for(_is(JobFailed, request.job_id), limit_s=60)

    assert isinstance(failed, JobFailed)
    assert (failed.code, failed.round, failed.rounds_completed) == ("too_few_clients", 1, 0)
    assert failed.message.startswith("round 1: ")
    starts = {e.event_id: e for e in watch.seen if _is(RoundStarted, request.job_id)(e)}
    assert [e.round for e in starts.values() if isinstance(e, RoundStarted)] == [1, 1]  # a retry
    first, retry = starts.values()
    assert isinstance(first, RoundStarted)
    assert isinstance(retry, RoundStarted)
    assert retry.deadline > first.deadline
