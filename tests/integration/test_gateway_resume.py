"""The gateway on the real stack: SSE streams resume with Last-Event-ID; key guessing is refused.

Subscribers drop their connection every few events and reconnect with the id of the last event
they got; each must end with every event of the job exactly once, in the gateway's order.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from fedbus.bus import EventProducer
from fedbus.events import (
    Event,
    JobAccepted,
    JobCompleted,
    JobSpec,
    JobStatus,
    ModelRef,
    Phase,
    PrivacySpec,
    Progress,
    RoundCompleted,
    RoundStarted,
    StrategySpec,
    TrainingConfig,
    utc_now,
)
from fedbus.settings import FedbusSettings
from tests.integration.gateway_process import Gateway, running_gateway
from tests.integration.harness import unique

SPEC = JobSpec.model_validate(
    {"mode": "federated", "model": "mlp", "dataset": "digits", "rounds": 3,
     "clients_per_round": 2, "min_clients": 2}
)  # fmt: skip
MODEL = ModelRef(object_key="jobs/x/round-1/global/ef", size_bytes=4, sha256="ef" * 32)
ROUNDS, STEPS = 3, 40
RECONNECTS_ALLOWED = {"FEDBUS_GATEWAY_RATE_PER_SECOND": "1000", "FEDBUS_GATEWAY_RATE_BURST": "1000"}
"""The subscribers reconnect ~80 times within a second or two: past the default key limit."""


def _job_events(job_id: str) -> list[Event]:
    """Three rounds of a job: round.started, 2 x 40 progress, round.completed each."""
    common: dict[str, Any] = {"source": "it-test", "job_id": job_id}
    events: list[Event] = []
    for rnd in range(1, ROUNDS + 1):
        events.append(
            RoundStarted.create(**common, round=rnd, selected_clients=["c1", "c2"],
                                min_clients=2, deadline=utc_now(), model="mlp", dataset="digits",
                                training=TrainingConfig(), strategy=StrategySpec(),
                                privacy=PrivacySpec(), seed=1)
        )  # fmt: skip
        events += [
            Progress.create(**common, round=rnd, client_id=c, phase=Phase.TRAINING, message="t",
                            step=s, total=STEPS)
            for s in range(1, STEPS + 1) for c in ("c1", "c2")
        ]  # fmt: skip
        events.append(
            RoundCompleted.create(**common, round=rnd, global_model=MODEL,
                                  participants=["c1", "c2"], total_samples=200,
                                  metrics={"accuracy": 0.5 + rnd / 10})
        )  # fmt: skip
    return events


async def _follow(
    client: httpx.AsyncClient,
    path: str,
    headers: dict[str, str],
    *,
    drop_every: int,
    last_id: str | None = None,
    subscribed: asyncio.Event | None = None,
) -> tuple[list[str], int]:
    """The event ids of a stream read until job.completed, dropped every ``drop_every`` events.

    Each reconnection sends ``Last-Event-ID``; returns the ids and the number of reconnects.
    """
    got: list[str] = []
    for reconnects in range(500):
        resume = {"Last-Event-ID": last_id} if last_id is not None else {}
        async with aconnect_sse(client, "GET", path, headers=headers | resume) as source:
            assert source.response.status_code == 200, await source.response.aread()
            since_connect = 0
            async for sse in source.aiter_sse():
                if not sse.data:  # a keep-alive comment
                    continue
                if sse.event == "status":
                    if subscribed is not None:
                        subscribed.set()
                    continue
                got.append(json.loads(sse.data)["event_id"])
                last_id, since_connect = sse.id, since_connect + 1
                if sse.event == "job.completed":
                    return got, reconnects
                if since_connect == drop_every:
                    break  # leaving the block closes the connection mid-stream
    raise AssertionError(f"{path}: no job.completed after 500 reconnections")


async def _recorded(client: httpx.AsyncClient, path: str, headers: dict[str, str], n: int) -> None:
    """Wait until the gateway has recorded ``n`` events of the job (read from Last-Event-ID 0)."""

    async def count() -> int:
        seen = 0
        async with aconnect_sse(
            client, "GET", path, headers=headers | {"Last-Event-ID": "0"}
        ) as src:
            async for sse in src.aiter_sse():
                seen += bool(sse.data) and sse.event != "status"
                if seen == n:
                    break
        return seen

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if await asyncio.wait_for(count(), 2) == n:
                return
        except TimeoutError:  # the record had fewer: the stream waits for live ones
            pass
    raise AssertionError(f"the gateway did not record {n} events within 60 s")


async def test_reconnecting_subscribers_get_every_event_exactly_once_in_order(
    settings: FedbusSettings, tmp_path: Path
) -> None:
    async with (
        running_gateway(settings, tmp_path, env=RECONNECTS_ALLOWED) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as client,
        EventProducer(settings, client_id="gateway-resume-it") as producer,
    ):
        job_id, auth = unique("gw-resume-job"), gateway.auth("a")
        path = f"/v1/jobs/{job_id}/events"
        accepted = JobAccepted.create(source="it-test", job_id=job_id, tenant=gateway.tenant("a"),
                                      request_event_id=job_id, spec=SPEC)  # fmt: skip
        rounds = _job_events(job_id)
        done = JobCompleted.create(source="it-test", job_id=job_id, status=JobStatus.COMPLETED,
                                   rounds_completed=ROUNDS, final_model=MODEL)  # fmt: skip
        await producer.publish(accepted)
        await _until_shown(client, f"/v1/jobs/{job_id}", auth)

        # Three subscribers follow from the start; two more join late and replay from id 0.
        opened = [asyncio.Event() for _ in range(3)]
        early = [
            asyncio.create_task(_follow(client, path, auth, drop_every=n, subscribed=o))
            for n, o in zip((7, 23, 60), opened, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(o.wait() for o in opened)), 30)
        await producer.publish_many(rounds[: len(rounds) // 2])
        late = [
            asyncio.create_task(_follow(client, path, auth, drop_every=n, last_id="0"))
            for n in (11, 1000)
        ]
        await producer.publish_many(rounds[len(rounds) // 2 :])
        # Progress and rounds travel on other topics than job.completed: let them land first.
        await _recorded(client, path, auth, 1 + len(rounds))
        await producer.publish(done)
        results = await asyncio.wait_for(asyncio.gather(*early, *late), 120)
        record, _ = await _follow(client, path, auth, drop_every=10**6, last_id="0")

    published = [accepted, *rounds, done]
    assert sorted(record) == sorted(e.event_id for e in published)
    for topic in ("progress", "round.started", "round.completed"):  # a job keeps its partition
        in_record = [i for i in record if i in {e.event_id for e in published if e.type == topic}]
        assert in_record == [e.event_id for e in published if e.type == topic]
    for ids, _ in results[:3]:
        assert ids == record[1:]  # job.accepted came before they subscribed (in the status)
    for ids, _ in results[3:]:
        assert ids == record
    # At least the drops the subscribers made (the gateway may drop a slow one too).
    least = [(len(record) - 2) // n for n in (7, 23, 60)] + [(len(record) - 1) // 11, 0]
    assert all(r >= n for (_, r), n in zip(results, least, strict=True))


async def _until_shown(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (await client.get(path, headers=headers)).status_code == 200:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} never appeared")


async def test_guessing_keys_gets_429_after_the_limit_and_logs_no_key(
    settings: FedbusSettings, tmp_path: Path
) -> None:
    limits = {"FEDBUS_GATEWAY_AUTH_FAILURES": "5", "FEDBUS_GATEWAY_AUTH_FAILURE_WINDOW_S": "300"}
    guess = unique("sk-guessed-key")
    async with (
        running_gateway(settings, tmp_path, env=limits) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as attacker,
        _client_from(gateway, "127.0.0.2") as neighbour,
    ):
        answers = []
        for i in range(20):  # the forwarded address changes too: it must not reset the count
            spoof = {"X-Forwarded-For": f"203.0.113.{i}", "Authorization": f"Bearer {guess}{i}"}
            answers.append(await attacker.get("/v1/jobs", headers=spoof))
        right_key = await attacker.get("/v1/jobs", headers=gateway.auth("a"))
        other_address = await neighbour.get("/v1/jobs", headers=gateway.auth("a"))
        log = gateway.proc.text()

    assert [a.status_code for a in answers] == [401] * 5 + [429] * 15
    assert all(1 <= int(a.headers["Retry-After"]) <= 300 for a in answers[5:])
    assert right_key.status_code == 429
    assert other_address.status_code == 200
    assert guess not in log
    assert log.count("unknown API key from 127.0.0.1") == 1  # once per window


def _client_from(gateway: Gateway, address: str) -> httpx.AsyncClient:
    """A client whose connections come from ``address`` (another loopback address)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=gateway.url, timeout=10, transport=transport)
