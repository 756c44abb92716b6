"""The gateway as a real process on the real stack: submit, follow, isolate, refuse."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from fedbus.bus import EventProducer
from fedbus.events import (
    Event,
    JobAccepted,
    JobCompleted,
    JobRequested,
    JobSpec,
    JobStatus,
    ModelRef,
    PrivacySpec,
    RoundCompleted,
    RoundStarted,
    StrategySpec,
    TrainingConfig,
    utc_now,
)
from fedbus.settings import FedbusSettings
from tests.integration.gateway_process import Gateway
from tests.integration.harness import EventWatcher, unique

SPEC = {"mode": "federated", "model": "mlp", "dataset": "digits", "rounds": 1,
        "clients_per_round": 2, "min_clients": 2}  # fmt: skip
MODEL = ModelRef(object_key="jobs/x/round-1/global/ef", size_bytes=4, sha256="ef" * 32)


async def _read_stream(
    client: httpx.AsyncClient,
    path: str,
    headers: dict[str, str],
    frames: list[tuple[str, dict[str, Any]]],
    opened: asyncio.Event,
) -> None:
    async with aconnect_sse(client, "GET", path, headers=headers, timeout=60) as source:
        assert source.response.status_code == 200
        async for sse in source.aiter_sse():
            if sse.data:  # a keep-alive comment dispatches a frame without data
                frames.append((sse.event, json.loads(sse.data)))
                opened.set()


async def _until(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], check: Any, limit_s: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = (await client.get(path, headers=headers)).json()
        if check(body):
            return body
        await asyncio.sleep(0.25)
    raise AssertionError(f"{path} never matched; last: {body}")


def _progress_events(job_id: str, tenant: str, spec: JobSpec) -> list[Event]:
    common: dict[str, Any] = {"source": "it-test", "job_id": job_id}
    return [
        JobAccepted.create(**common, tenant=tenant, request_event_id=job_id, spec=spec),
        RoundStarted.create(**common, round=1, selected_clients=["c1", "c2"], min_clients=2,
                            deadline=utc_now(), model="mlp", dataset="digits",
                            training=TrainingConfig(), strategy=StrategySpec(),
                            privacy=PrivacySpec(), seed=1),
        RoundCompleted.create(**common, round=1, global_model=MODEL, participants=["c1", "c2"],
                              total_samples=200, metrics={"accuracy": 0.81, "loss": 0.6}),
    ]  # fmt: skip


async def test_submit_follow_isolate_refuse(gateway: Gateway, settings: FedbusSettings) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        # submit: job.requested on Kafka with tenant A and the spec
        async with EventWatcher(settings, ["job.requested"]) as watch:
            reply = await client.post("/v1/jobs", json={"spec": SPEC}, headers=gateway.auth("a"))
            assert reply.status_code == 202, reply.text
            job_id = reply.json()["job_id"]
            requested = await watch.wait_for(lambda e: e.job_id == job_id, limit_s=30)
        assert isinstance(requested, JobRequested)
        assert requested.tenant == gateway.tenant("a")
        assert requested.spec == JobSpec.model_validate(SPEC)
        assert requested.source == "gateway"

        # follow: a job an upstream system started, its events published straight to Kafka.
        # (Not the job above: a live orchestration on the shared broker may reject that one.)
        job_id = unique("gw-it-job")
        path = f"/v1/jobs/{job_id}"
        accepted, *rounds = _progress_events(job_id, gateway.tenant("a"), requested.spec)
        frames: list[tuple[str, dict[str, Any]]] = []
        opened = asyncio.Event()
        async with EventProducer(settings, client_id="gateway-it") as producer:
            await producer.publish(accepted)
            await _until(client, path, gateway.auth("a"), lambda b: b.get("status") == "accepted")
            reader = asyncio.create_task(
                _read_stream(client, f"{path}/events", gateway.auth("a"), frames, opened)
            )
            await asyncio.wait_for(opened.wait(), 30)
            await producer.publish_many(rounds)
            running = await _until(
                client, path, gateway.auth("a"), lambda b: b.get("rounds_completed") == 1
            )
            await producer.publish(
                JobCompleted.create(source="it-test", job_id=job_id, status=JobStatus.COMPLETED,
                                    rounds_completed=1, final_model=MODEL,
                                    metrics={"accuracy": 0.81})
            )  # fmt: skip
            done = await _until(client, path, gateway.auth("a"), lambda b: b["status"] != "running")
        await asyncio.wait_for(reader, 30)  # the stream ends by itself after job.completed

        assert (running["status"], running["current_round"]) == ("running", 1)
        assert running["participants"] == ["c1", "c2"]
        assert running["metrics"] == {"accuracy": 0.81, "loss": 0.6}
        assert (done["status"], done["metrics"]) == ("completed", {"accuracy": 0.81})
        names = [name for name, _ in frames]
        assert names[0] == "status"
        assert frames[0][1]["status"] == "accepted"
        assert sorted(names[1:-1]) == ["round.completed", "round.started"]
        assert names[-1] == "job.completed"
        assert frames[-1][1]["job_id"] == job_id

        # isolate: tenant B sees nothing of tenant A's job
        other = await client.get(path, headers=gateway.auth("b"))
        listed = await client.get("/v1/jobs", headers=gateway.auth("b"))
        mine = await client.get("/v1/jobs", headers=gateway.auth("a"))
        assert other.status_code == 404
        assert listed.json() == {"jobs": []}
        assert {j["job_id"] for j in mine.json()["jobs"]} == {job_id, requested.job_id}

        # refuse: a bad spec is 422 naming the field; the registry being down is 503
        bad = await client.post(
            "/v1/jobs", json={"spec": {**SPEC, "rounds": "many"}}, headers=gateway.auth("a")
        )
        models = await client.get("/v1/models", headers=gateway.auth("a"))
        assert bad.status_code == 422
        assert "spec.rounds" in bad.json()["detail"]
        assert models.status_code == 503
