"""The aggregator process against the real Kafka, MinIO and PostgreSQL: a full round, a
straggler at the deadline, corrupted updates, and a kill -9 in the middle of a round."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from fedbus.bus import EventProducer, ensure_topics
from fedbus.events import (
    Event,
    ModelRef,
    PrivacySpec,
    RoundAssigned,
    RoundCompleted,
    RoundStarted,
    StrategySpec,
    TrainingConfig,
    UpdateSubmitted,
    assigned_topic,
    utc_now,
)
from fedbus.settings import FedbusSettings
from fedbus.storage import S3ArtifactStore, tensors_to_bytes, update_key
from fedbus_executor import DataRef, PrepareOptions, initial_weights, prepare_dataset

from .harness import EventWatcher, ServiceProcess, fresh_group, read_all, unique

CONSUMED = ["round.started", "update.submitted"]
SEED = 3
Arrays = dict[str, np.ndarray]


class Aggregator:
    """Starts (and restarts) aggregator processes sharing one consumer group."""

    def __init__(self, log_dir: Path, eval_data: str) -> None:
        self.log_dir, self.eval_data = log_dir, eval_data
        self.group = unique("agg-test")
        self.procs: list[ServiceProcess] = []

    def start(self) -> ServiceProcess:
        proc = ServiceProcess.start(
            f"aggregator-{len(self.procs)}", "fedbus_aggregator", log_dir=self.log_dir,
            args=["--eval-data", self.eval_data],
            env={"FEDBUS_CONSUMER_GROUP": self.group, "FEDBUS_EVAL_DEVICE": "cpu"},
        )  # fmt: skip
        self.procs.append(proc)
        _wait_ready(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop()


def _wait_ready(proc: ServiceProcess, limit_s: float = 240) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert proc.alive(), f"aggregator exited:\n{proc.text()[-3000:]}"
        found = re.search(r"ops server on [\d.]+:(\d+)", proc.text())
        if found:
            try:
                if httpx.get(f"http://127.0.0.1:{found[1]}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    raise TimeoutError(f"aggregator not ready in {limit_s}s:\n{proc.text()[-3000:]}")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A unique dataset name and the held-out digits test set behind it."""
    root = tmp_path_factory.mktemp("digits")
    prepared = prepare_dataset("digits", root, PrepareOptions(num_clients=2, seed=1))
    return unique("digits-agg"), prepared.root / "test.parquet"


def _aggregator(settings: FedbusSettings, log_dir: Path, dataset: tuple[str, Path]) -> Aggregator:
    asyncio.run(ensure_topics(settings))
    agg = Aggregator(log_dir, f"{dataset[0]}={dataset[1]}")
    asyncio.run(fresh_group(settings, agg.group, CONSUMED))
    return agg


@pytest.fixture(scope="module")
def aggregator(
    settings: FedbusSettings,
    tmp_path_factory: pytest.TempPathFactory,
    dataset: tuple[str, Path],
) -> Iterator[Aggregator]:
    agg = _aggregator(settings, tmp_path_factory.mktemp("aggregator"), dataset)
    try:
        agg.start()
        yield agg
    finally:
        agg.stop_all()


@pytest.fixture
async def producer(settings: FedbusSettings) -> AsyncIterator[EventProducer]:
    async with EventProducer(settings, client_id="aggregator-test") as prod:
        yield prod


@pytest.fixture
def artifacts(settings: FedbusSettings) -> S3ArtifactStore:
    return S3ArtifactStore.from_settings(settings)


@pytest.fixture(scope="module")
def initial(dataset: tuple[str, Path]) -> Arrays:
    spec = DataRef(path=str(dataset[1])).resolve_spec()
    return initial_weights("mlp", SEED, spec)


def round_started(
    job: str, dataset: str, clients: list[str], *, min_clients: int, deadline_s: float
) -> RoundStarted:
    return RoundStarted.create(
        source="orchestration", job_id=job, round=1, selected_clients=clients,
        min_clients=min_clients, deadline=utc_now() + timedelta(seconds=deadline_s),
        global_model=None, model="mlp", dataset=dataset, training=TrainingConfig(),
        strategy=StrategySpec(), privacy=PrivacySpec(), seed=SEED,
    )  # fmt: skip


def small_delta(initial: Arrays, value: float) -> Arrays:
    return {name: np.full_like(array, value) for name, array in initial.items()}


async def upload(
    artifacts: S3ArtifactStore, job: str, client: str, delta: Arrays, *, n: int = 50
) -> UpdateSubmitted:
    # Where the client's grant lets it write (the aggregator accepts no other key).
    ref = await artifacts.put_at(tensors_to_bytes(delta), key=update_key(job, 1, client))
    return UpdateSubmitted.create(
        source="trainer", job_id=job, round=1, client_id=client, update=ref, num_samples=n,
        metrics={"loss": 2.0, "accuracy": 0.1},
    )  # fmt: skip


def _for_job(job: str) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, RoundCompleted) and e.job_id == job


async def test_full_round_produces_a_verified_global_model_with_accuracy(
    settings: FedbusSettings,
    aggregator: Aggregator,
    dataset: tuple[str, Path],
    producer: EventProducer,
    artifacts: S3ArtifactStore,
    initial: Arrays,
) -> None:
    job = unique("job-agg")
    async with EventWatcher(settings, ["round.completed"]) as watch:
        await producer.publish(
            round_started(job, dataset[0], ["a", "b", "c"], min_clients=2, deadline_s=300)
        )
        for client, value, n in [("a", 0.01, 50), ("b", 0.02, 50), ("c", 0.04, 100)]:
            await producer.publish(
                await upload(artifacts, job, client, small_delta(initial, value), n=n)
            )
        done = await watch.wait_for(_for_job(job), limit_s=180)

    assert isinstance(done, RoundCompleted)
    assert sorted(done.participants) == ["a", "b", "c"]
    assert done.total_samples == 200
    new = await artifacts.get_tensors(done.global_model)  # checks size and SHA-256
    for name, array in initial.items():
        np.testing.assert_allclose(new[name], array + 0.0275, rtol=1e-5, atol=1e-6)
    assert 0.0 <= done.metrics["accuracy"] <= 1.0
    assert done.metrics["loss"] > 0
    assert done.metrics["train_loss"] == pytest.approx(2.0)
    # Each selected client was granted its round on its own topic: its key, URLs, expiry.
    for client in ("a", "b", "c"):
        [grant] = [e for e in await read_all(settings, assigned_topic(client))
                   if isinstance(e, RoundAssigned) and e.job_id == job]  # fmt: skip
        assert grant.client_id == client
        assert grant.update_key == update_key(job, 1, client)
        assert f"/{grant.update_key}?" in grant.update_url
        assert "X-Amz-Signature=" in grant.update_url
        assert grant.global_model_url is None  # round 1: built from the seed
        assert grant.urls_expire_at > grant.deadline


async def test_straggler_is_dropped_at_the_deadline(
    settings: FedbusSettings,
    aggregator: Aggregator,
    dataset: tuple[str, Path],
    producer: EventProducer,
    artifacts: S3ArtifactStore,
    initial: Arrays,
) -> None:
    job = unique("job-agg")
    async with EventWatcher(settings, ["round.completed"]) as watch:
        await producer.publish(
            round_started(job, dataset[0], ["a", "b", "c"], min_clients=2, deadline_s=6)
        )
        for client in ("a", "b"):
            await producer.publish(await upload(artifacts, job, client, small_delta(initial, 0.01)))
        done = await watch.wait_for(_for_job(job), limit_s=120)

    assert isinstance(done, RoundCompleted)
    assert sorted(done.participants) == ["a", "b"]
    assert [(d.client_id, d.code) for d in done.dropped] == [("c", "deadline")]


async def test_corrupted_updates_are_rejected_and_the_service_keeps_running(
    settings: FedbusSettings,
    aggregator: Aggregator,
    dataset: tuple[str, Path],
    producer: EventProducer,
    artifacts: S3ArtifactStore,
    initial: Arrays,
) -> None:
    job = unique("job-agg")
    tampered = await upload(artifacts, job, "c", small_delta(initial, 0.01))
    tampered = tampered.model_copy(
        update={"update": ModelRef(
            object_key=tampered.update.object_key, size_bytes=tampered.update.size_bytes,
            sha256="0" * 64,
        )}
    )  # fmt: skip
    wrong_shape = {name: np.zeros((2, 2), np.float32) for name in initial}
    async with EventWatcher(settings, ["round.completed"]) as watch:
        # c's event names other bytes than c's object: any trainer may send one in c's name,
        # so the round waits for c's own event until the deadline, then drops c.
        await producer.publish(
            round_started(job, dataset[0], ["a", "b", "c", "d"], min_clients=2, deadline_s=20)
        )
        for client in ("a", "b"):
            await producer.publish(await upload(artifacts, job, client, small_delta(initial, 0.01)))
        await producer.publish(tampered)
        await producer.publish(await upload(artifacts, job, "d", wrong_shape))
        done = await watch.wait_for(_for_job(job), limit_s=120)

    assert isinstance(done, RoundCompleted)
    assert sorted(done.participants) == ["a", "b"]
    reasons = {d.client_id: (d.code, d.message) for d in done.dropped}
    assert reasons["c"][0] == "integrity"
    assert "SHA-256" in reasons["c"][1]
    assert reasons["d"][0] == "invalid_update"
    assert "shape" in reasons["d"][1]
    assert all(proc.alive() for proc in aggregator.procs)


async def _accepted(settings: FedbusSettings, job: str) -> int:
    conn = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM aggregator_updates WHERE job_id = $1 AND status = 'accepted'",
                job,
            )
        )
    finally:
        await conn.close()


async def _caught_up(settings: FedbusSettings, group: str, job: str) -> bool:
    """The job's round.completed is acknowledged and ``group`` committed all it consumes."""
    conn = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        published = await conn.fetchval(
            "SELECT published FROM aggregator_rounds WHERE job_id = $1 AND round = 1", job
        )
    finally:
        await conn.close()
    if not published:
        return False
    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), client_id="aggregator-test")
    ends = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=None)
    await admin.start()
    await ends.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        parts = [tp for tp in committed if tp.topic in CONSUMED]  # all: see fresh_group
        end_offsets = await ends.end_offsets(parts)
    finally:
        await ends.stop()
        await admin.close()
    return bool(parts) and all(committed[tp].offset >= end for tp, end in end_offsets.items())


async def _until(check: Callable[[], Awaitable[bool]], *, limit_s: float) -> None:
    """Poll ``check`` until it is true; TimeoutError after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {limit_s}s")
        await asyncio.sleep(0.2)


async def test_kill_9_mid_round_loses_nothing_and_aggregates_once(
    settings: FedbusSettings,
    tmp_path: Path,
    dataset: tuple[str, Path],
    producer: EventProducer,
    artifacts: S3ArtifactStore,
    initial: Arrays,
) -> None:
    await ensure_topics(settings)
    agg = Aggregator(tmp_path, f"{dataset[0]}={dataset[1]}")
    await fresh_group(settings, agg.group, CONSUMED)
    job = unique("job-agg")
    try:
        first = await asyncio.to_thread(agg.start)
        async with EventWatcher(settings, ["round.completed"]) as watch:
            await producer.publish(
                round_started(job, dataset[0], ["a", "b", "c"], min_clients=3, deadline_s=600)
            )
            for client in ("a", "b"):
                await producer.publish(
                    await upload(artifacts, job, client, small_delta(initial, 0.01))
                )
            for _ in range(240):
                if await _accepted(settings, job) == 2:
                    break
                await asyncio.sleep(0.5)
            assert await _accepted(settings, job) == 2
            first.stop(signal.SIGKILL)

            await asyncio.to_thread(agg.start)
            await producer.publish(await upload(artifacts, job, "c", small_delta(initial, 0.01)))
            done = await watch.wait_for(_for_job(job), limit_s=180)
            # Once the group has committed all it consumed and the round is marked published,
            # whatever the aggregator sends for this round is on the topic: read all of it.
            await _until(lambda: _caught_up(settings, agg.group, job), limit_s=120)
            while await watch.poll():
                pass

        assert isinstance(done, RoundCompleted)
        assert sorted(done.participants) == ["a", "b", "c"]
        assert done.total_samples == 150
        ids = {e.event_id for e in watch.seen if isinstance(e, RoundCompleted) and e.job_id == job}
        assert ids == {done.event_id}
    finally:
        agg.stop_all()
