"""A bad job spec against the real gateway: a precise 4xx, no row in PostgreSQL, no event."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from fedbus.events import EventDecodeError, JobRequested, decode
from fedbus.settings import FedbusSettings
from tests.integration.gateway_process import Gateway, running_gateway

SPEC = {"mode": "federated", "model": "mlp", "dataset": "digits", "rounds": 1,
        "clients_per_round": 2, "min_clients": 2}  # fmt: skip
DP = {"target_epsilon": 3.0, "delta": 1e-5, "clipping_norm": 1.0}

# Each reproducer of issue 19 and the field its 422 must name.
BAD: list[tuple[dict[str, Any], str]] = [
    ({"round": 5}, "spec.round"),
    ({"training": {"epochs": 2}}, "spec.training.epochs"),
    ({"rounds": True}, "spec.rounds"),
    ({"rounds": "3"}, "spec.rounds"),
    ({"seed": False}, "spec.seed"),
    ({"rounds": 0}, "spec.rounds"),
    ({"privacy": {"mode": "local_dp", **DP, "delta": 1.5}}, "spec.privacy.delta"),
    ({"privacy": {"mode": "local_dp", **DP, "target_epsilon": -1.0}},
     "spec.privacy.target_epsilon"),
    ({"strategy": {"name": "fedprox"}}, "spec.strategy.options.proximal_mu"),
    ({"strategy": {"name": "trimmed_mean", "options": {"beta": 0.9}}},
     "spec.strategy.options.beta"),
    ({"privacy": {"mode": "none", "target_epsilon": -1}}, "spec.privacy.target_epsilon"),
]  # fmt: skip


@asynccontextmanager
async def published_job_requests(settings: FedbusSettings) -> AsyncIterator[list[JobRequested]]:
    """Every ``job.requested`` published inside the block, read once it ends.

    The range is fixed by the end offsets before and after, so nothing is left to a wait: the
    gateway answers only once the broker has its event.
    """
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), group_id=None, enable_auto_commit=False,
        isolation_level="read_committed",
    )  # fmt: skip
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        parts = [TopicPartition("job.requested", p)
                 for p in sorted(consumer.partitions_for_topic("job.requested") or ())]  # fmt: skip
        consumer.assign(parts)
        start = await consumer.end_offsets(parts)
        found: list[JobRequested] = []
        yield found
        end = await consumer.end_offsets(parts)
        for tp in parts:
            consumer.seek(tp, start[tp])
        deadline = time.monotonic() + 60
        while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
            assert time.monotonic() < deadline, "job.requested not read to its end offsets"
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if record.offset >= end[TopicPartition(record.topic, record.partition)]:
                        continue
                    try:
                        event = decode(record.value or b"")
                    except EventDecodeError:
                        continue
                    if isinstance(event, JobRequested):
                        found.append(event)
    finally:
        await consumer.stop()


async def stored_jobs(settings: FedbusSettings, tenant: str) -> int:
    conn = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        count = await conn.fetchval("SELECT count(*) FROM gateway_jobs WHERE tenant = $1", tenant)
    finally:
        await conn.close()
    return int(count)


async def test_each_bad_spec_is_422_naming_the_field_and_nothing_is_stored_or_published(
    gateway: Gateway, settings: FedbusSettings
) -> None:
    tenant = gateway.tenant("a")
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as client,
        published_job_requests(settings) as published,
    ):
        for overrides, field in BAD:
            reply = await client.post(
                "/v1/jobs", json={"spec": {**SPEC, **overrides}, "idempotency_key": field},
                headers=gateway.auth("a"),
            )  # fmt: skip

            assert reply.status_code == 422, (overrides, reply.text)
            assert field in [e["field"] for e in reply.json()["errors"]], reply.text

    assert await stored_jobs(settings, tenant) == 0
    assert [e.job_id for e in published if e.tenant == tenant] == []


async def test_a_10_mb_model_name_is_422_where_the_body_limit_lets_it_in(
    settings: FedbusSettings, tmp_path: Path
) -> None:
    # The edge's body limit raised past the request: the spec check itself must refuse it
    # (it used to reach the bus, which cannot take the event, and answer 503).
    limit = {"FEDBUS_GATEWAY_MAX_BODY_BYTES": str(32 * 2**20)}
    async with (
        running_gateway(settings, tmp_path, env=limit) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=60) as client,
        published_job_requests(settings) as published,
    ):
        reply = await client.post(
            "/v1/jobs", json={"spec": {**SPEC, "model": "m" * 10_000_000}},
            headers=gateway.auth("a"),
        )  # fmt: skip
        tenant = gateway.tenant("a")

    assert reply.status_code == 422, reply.text[:500]
    assert [e["field"] for e in reply.json()["errors"]] == ["spec.model"]
    assert len(reply.content) < 2000  # the answer does not echo the 10 MB back
    assert await stored_jobs(settings, tenant) == 0
    assert [e.job_id for e in published if e.tenant == tenant] == []


async def test_a_10_mb_model_name_is_413_at_the_default_body_limit(gateway: Gateway) -> None:
    # A client that asks before sending (Expect: 100-continue) reads the answer; one that
    # sends on regardless may see the connection reset, as the rest is never read.
    body = json.dumps({"spec": {**SPEC, "model": "m" * 10_000_000}}).encode()
    url = httpx.URL(gateway.url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        head = (f"POST /v1/jobs HTTP/1.1\r\nHost: {url.host}\r\n"
                f"Authorization: Bearer {gateway.keys['a'][0]}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Expect: 100-continue\r\n\r\n")  # fmt: skip
        writer.write(head.encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 30)
    finally:
        writer.close()

    assert status_line.split()[1] == b"413", status_line


async def test_a_good_spec_after_bad_ones_is_stored_and_published_once(
    gateway: Gateway, settings: FedbusSettings
) -> None:
    # The same queries see a job that was taken: the checks above look in the right places.
    tenant = gateway.tenant("a")
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as client,
        published_job_requests(settings) as published,
    ):
        bad = await client.post(
            "/v1/jobs", json={"spec": {**SPEC, "round": 5}}, headers=gateway.auth("a")
        )
        good = await client.post("/v1/jobs", json={"spec": SPEC}, headers=gateway.auth("a"))

    assert (bad.status_code, good.status_code) == (422, 202)
    assert await stored_jobs(settings, tenant) == 1
    assert [e.job_id for e in published if e.tenant == tenant] == [good.json()["job_id"]]
