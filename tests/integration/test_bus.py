"""The bus on the real broker, with the consumer in its own process: order per job,
dead letters for malformed input, and no double application after a crash before commit."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from fedbus.bus import EventProducer, ensure_topics, reset_group_to_end
from fedbus.events import DeadLetter, JobFailed, Phase, Progress, decode, encode
from fedbus.settings import FedbusSettings

WORKER = Path(__file__).parent / "workers" / "bus_worker.py"


class Worker:
    """A bus_worker.py process and its log."""

    def __init__(self, log: Path, env: dict[str, str]) -> None:
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER)], stdout=self._out, stderr=subprocess.STDOUT, env=env
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self._out.close()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(prefix: str, group: str, commit_interval_s: float = 0.0) -> Worker:
        env = dict(
            os.environ,
            WORKER_JOB_PREFIX=prefix,
            WORKER_GROUP=group,
            WORKER_COMMIT_INTERVAL_S=str(commit_interval_s),
            PYTHONUNBUFFERED="1",
        )
        worker = Worker(tmp_path / f"worker-{len(workers)}.log", env)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.kill(signal.SIGTERM)


async def _eventually(check: Callable[[], Awaitable[Any]], what: str, limit_s: float = 60) -> Any:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.25)
    pytest.fail(f"timed out after {limit_s}s waiting for {what}")


def _progress(job_id: str, step: int) -> Progress:
    return Progress.create(
        source="test",
        job_id=job_id,
        phase=Phase.TRAINING,
        message=f"step {step}",
        step=step,
        total=50,
    )


@pytest.fixture
async def pg(settings: FedbusSettings) -> Any:
    pool = await asyncpg.create_pool(settings.postgres_dsn.get_secret_value(), min_size=1)
    yield pool
    await pool.close()


async def _effects(pool: Any, prefix: str) -> list[Any]:
    exists = await pool.fetchval("SELECT to_regclass('bus_effects') IS NOT NULL")
    if not exists:
        return []
    return list(
        await pool.fetch(
            "SELECT job_id, event_id, step FROM bus_effects WHERE job_id LIKE $1 ORDER BY seq",
            prefix + "%",
        )
    )


async def test_events_of_one_job_arrive_in_order(
    settings: FedbusSettings, pg: Any, start_worker: Callable[..., Worker]
) -> None:
    prefix = f"order-{uuid.uuid4().hex[:8]}-"
    jobs = [prefix + str(i) for i in range(3)]
    await ensure_topics(settings)
    group = f"order-{uuid.uuid4().hex[:8]}"
    await reset_group_to_end(settings, "progress", group)
    start_worker(prefix, group)
    events = [_progress(job, step) for step in range(50) for job in jobs]

    async with EventProducer(settings, client_id="test-order") as producer:
        await producer.publish_many(events)
    rows = await _eventually(
        lambda: _count_at_least(pg, prefix, len(events)), "all 150 events handled"
    )

    for job in jobs:
        assert [r["step"] for r in rows if r["job_id"] == job] == list(range(50))


async def _count_at_least(pool: Any, prefix: str, n: int) -> list[Any] | None:
    rows = await _effects(pool, prefix)
    return rows if len(rows) >= n else None


async def _dead_letters(settings: FedbusSettings, key: bytes, n: int) -> list[DeadLetter]:
    consumer = AIOKafkaConsumer(
        "progress.dlq",
        **settings.kafka_client_options(),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[DeadLetter] = []
    try:
        deadline = time.monotonic() + 30
        while len(found) < n and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found += [
                    e
                    for r in records
                    if r.key == key and isinstance(e := decode(r.value), DeadLetter)
                ]
    finally:
        await consumer.stop()
    return found


async def test_malformed_messages_land_in_the_dlq_and_the_consumer_goes_on(
    settings: FedbusSettings, pg: Any, start_worker: Callable[..., Worker]
) -> None:
    prefix = f"dlq-{uuid.uuid4().hex[:8]}-"
    job, key = prefix + "0", (prefix + "0").encode()
    await ensure_topics(settings)
    group = f"dlq-{uuid.uuid4().hex[:8]}"
    await reset_group_to_end(settings, "progress", group)
    worker = start_worker(prefix, group)
    missing_phase = json.loads(encode(_progress(job, 1)))
    del missing_phase["phase"]
    unknown_type = {**json.loads(encode(_progress(job, 2))), "type": "no.such.event"}
    wrong_topic = encode(
        JobFailed.create(source="test", job_id=job, code="x", message="belongs on job.failed")
    )
    bad = {
        "bad json": b"{this is not json",
        "wrong schema": json.dumps(missing_phase).encode(),
        "unknown type": json.dumps(unknown_type).encode(),
        "wrong topic": wrong_topic,
        "oversized": b"{" + b" " * 1_100_000 + b"}",
    }

    async with EventProducer(settings, client_id="test-dlq") as producer:
        for value in bad.values():
            await producer.publish_raw("progress", value, key=key)
        await producer.publish(_progress(job, 99))
    await _eventually(lambda: _count_at_least(pg, prefix, 1), "the valid event after the bad ones")
    letters = await _dead_letters(settings, key, len(bad))

    assert worker.alive()
    assert [r["step"] for r in await _effects(pg, prefix)] == [99]
    assert len(letters) == len(bad)
    kept = {base64.b64decode(d.original_value_b64) for d in letters}
    assert kept - set(bad.values()) == {bad["oversized"][: 512 * 1024]}
    assert "truncated" in next(
        d.error_message for d in letters if d.error_message.count("bytes") > 1
    )
    assert all(d.original_topic == "progress" and d.error_message for d in letters)
    reasons = " | ".join(d.error_message for d in letters)
    assert "phase" in reasons
    assert "no.such.event" in reasons
    assert "job.failed" in reasons


async def _processed(pool: Any, group: str, event_id: str) -> bool:
    exists = await pool.fetchval("SELECT to_regclass('fedbus_processed_events') IS NOT NULL")
    return bool(exists) and bool(
        await pool.fetchval(
            "SELECT 1 FROM fedbus_processed_events WHERE consumer_group=$1 AND event_id=$2",
            group,
            event_id,
        )
    )


async def test_a_consumer_killed_before_commit_gets_the_event_again_and_applies_it_once(
    settings: FedbusSettings, pg: Any, start_worker: Callable[..., Worker]
) -> None:
    prefix, group = f"crash-{uuid.uuid4().hex[:8]}-", f"crash-{uuid.uuid4().hex[:8]}"
    first, second = _progress(prefix + "0", 1), _progress(prefix + "0", 2)
    await ensure_topics(settings)
    await reset_group_to_end(settings, "progress", group)
    crashing = start_worker(prefix, group, commit_interval_s=3600)

    async with EventProducer(settings, client_id="test-crash") as producer:
        await producer.publish(first)
        await _eventually(lambda: _processed(pg, group, first.event_id), "first event handled")
        crashing.kill(signal.SIGKILL)
        restarted = start_worker(prefix, group)
        await producer.publish(second)
    await _eventually(lambda: _count_at_least(pg, prefix, 2), "second event handled")

    assert [r["event_id"] for r in await _effects(pg, prefix)] == [first.event_id, second.event_id]
    assert f"skipping redelivered event {first.event_id}" in restarted.text()


async def _stable_with(settings: FedbusSettings, group: str, members: int) -> bool:
    """True when ``group`` has settled (rebalance done) with ``members`` members."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        [described] = (await admin.describe_consumer_groups([group]))[0].groups
    finally:
        await admin.close()
    _, _, state, _, _, joined = described[:6]
    return bool(state == "Stable" and len(joined) == members)


async def test_a_second_consumer_joining_mid_stream_rebalances_without_loss_or_double_apply(
    settings: FedbusSettings, pg: Any, start_worker: Callable[..., Worker]
) -> None:
    prefix, group = f"rebal-{uuid.uuid4().hex[:8]}-", f"rebal-{uuid.uuid4().hex[:8]}"
    jobs = [prefix + str(i) for i in range(12)]
    await ensure_topics(settings)
    await reset_group_to_end(settings, "progress", group)
    first = start_worker(prefix, group)

    async with EventProducer(settings, client_id="test-rebalance") as producer:
        await producer.publish_many([_progress(job, step) for step in range(10) for job in jobs])
        await _eventually(lambda: _count_at_least(pg, prefix, 30), "first events handled")
        second = start_worker(prefix, group)
        await _eventually(lambda: _stable_with(settings, group, 2), "both workers in the group")
        await producer.publish_many(
            [_progress(job, step) for step in range(10, 20) for job in jobs]
        )
    rows = await _eventually(lambda: _count_at_least(pg, prefix, 240), "all 240 events handled")

    assert first.alive(), first.text()[-2000:]
    assert second.alive(), second.text()[-2000:]
    assert len(rows) == 240
    assert len({r["event_id"] for r in rows}) == 240
    for job in jobs:
        assert [r["step"] for r in rows if r["job_id"] == job] == list(range(20))
