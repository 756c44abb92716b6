"""The local stack is real: Kafka, MinIO and PostgreSQL each round-trip data, and Kafka survives
a kill -9 with its topic's data intact once `make up` brings it back."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import asyncpg
import boto3
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from botocore.config import Config

from fedbus.settings import FedbusSettings

REPO = Path(__file__).resolve().parents[2]


async def _create_topic(settings: FedbusSettings, name: str) -> None:
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def _produce(settings: FedbusSettings, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(
        **settings.kafka_client_options(), acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"smoke-job")
    finally:
        await producer.stop()


async def _consume(settings: FedbusSettings, topic: str, group: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        **settings.kafka_client_options(),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    got: list[bytes] = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                got.extend(r.value for r in records if r.value is not None)
        await consumer.commit()
    finally:
        await consumer.stop()
    return got


async def _committed(settings: FedbusSettings, topic: str, group: str) -> int | None:
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        offset: int | None = await consumer.committed(TopicPartition(topic, 0))
        return offset
    finally:
        await consumer.stop()


async def test_kafka_produce_consume_with_manual_commit(settings: FedbusSettings) -> None:
    topic, group = f"smoke.{uuid.uuid4().hex[:8]}", f"smoke-{uuid.uuid4().hex[:8]}"
    await _create_topic(settings, topic)
    values = [f"event-{i}".encode() for i in range(20)]
    await _produce(settings, topic, values)

    got = await _consume(settings, topic, group, len(values))

    assert got == values
    assert await _committed(settings, topic, group) == len(values)


def test_minio_put_get_verifies_sha256(settings: FedbusSettings) -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=settings.minio_endpoint,
        aws_access_key_id=settings.minio_access_key,
        aws_secret_access_key=settings.minio_secret_key.get_secret_value(),
        region_name=settings.minio_region,
        verify=str(settings.minio_ca_file) if settings.minio_ca_file else True,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    bucket = f"smoke-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    body = os.urandom(256 * 1024)
    digest = hashlib.sha256(body).hexdigest()
    s3.put_object(Bucket=bucket, Key=f"objects/{digest}", Body=body, Metadata={"sha256": digest})

    obj = s3.get_object(Bucket=bucket, Key=f"objects/{digest}")
    data = obj["Body"].read()

    assert hashlib.sha256(data).hexdigest() == digest
    assert obj["Metadata"]["sha256"] == digest


async def test_postgres_round_trips_a_row(settings: FedbusSettings) -> None:
    conn = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    table = f"smoke_{uuid.uuid4().hex[:8]}"
    try:
        await conn.execute(f"CREATE TABLE {table} (id uuid PRIMARY KEY, payload jsonb NOT NULL)")
        row_id = uuid.uuid4()
        await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", row_id, '{"round": 3}')
        row = await conn.fetchrow(f"SELECT id, payload FROM {table} WHERE id = $1", row_id)
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()

    assert row is not None
    assert row["id"] == row_id
    assert row["payload"] == '{"round": 3}'


def _kafka_pid() -> int:
    state = Path(os.environ.get("FEDBUS_STATE_DIR", REPO / ".fedbus"))
    return int((state / "run" / "kafka.pid").read_text())


def _wait_dead(pid: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"kafka pid {pid} still alive {timeout_s}s after SIGKILL")


@pytest.mark.slow
def test_kafka_survives_kill_9_and_make_up_restores_it(settings: FedbusSettings) -> None:
    topic = f"smoke.kill.{uuid.uuid4().hex[:8]}"
    values = [f"durable-{i}".encode() for i in range(50)]
    asyncio.run(_create_topic(settings, topic))
    asyncio.run(_produce(settings, topic, values))
    pid = _kafka_pid()

    os.kill(pid, signal.SIGKILL)
    _wait_dead(pid)
    up = subprocess.run(["make", "up"], cwd=REPO, capture_output=True, text=True, timeout=300)

    assert up.returncode == 0, up.stdout + up.stderr
    assert _kafka_pid() != pid
    got = asyncio.run(_consume(settings, topic, f"smoke-{uuid.uuid4().hex[:8]}", len(values)))
    assert got == values
