"""``GET /v1/jobs/{id}/events``: a fake job's events arrive as SSE and the stream ends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from httpx_sse import aconnect_sse

from fedbus.events import (
    Event,
    JobAccepted,
    JobCompleted,
    JobSpec,
    JobStatus,
    ModelRef,
    Phase,
    Progress,
    RoundCompleted,
)
from fedbus_gateway.deps import Deps
from fedbus_gateway.handlers import HANDLERS

if TYPE_CHECKING:
    from .conftest import Env

Spec = Callable[..., dict[str, Any]]
MODEL = ModelRef(object_key="jobs/j/round-1/global/ab", size_bytes=10, sha256="ab" * 32)


async def read_stream(env: Env, job_id: str) -> tuple[str, list[tuple[str, str]]]:
    """The stream's content type and its (event, data) frames, read with httpx-sse."""
    path = f"/v1/jobs/{job_id}/events"
    async with aconnect_sse(env.client, "GET", path, headers=env.auth("acme")) as source:
        # httpx-sse also dispatches the blank line after a keep-alive comment: only data counts.
        frames = [(sse.event, sse.data) async for sse in source.aiter_sse() if sse.data]
        return source.response.headers["content-type"], frames


def job_events(job_id: str, spec: JobSpec) -> list[Event]:
    common: dict[str, Any] = {"source": "test", "job_id": job_id}
    return [
        JobAccepted.create(**common, tenant="acme", request_event_id=job_id, spec=spec),
        Progress.create(**common, round=1, client_id="c1", phase=Phase.TRAINING, message="t",
                        step=5, total=10),
        RoundCompleted.create(**common, round=1, global_model=MODEL, participants=["c1", "c2"],
                              total_samples=100, metrics={"accuracy": 0.9}),
        JobCompleted.create(**common, status=JobStatus.COMPLETED, rounds_completed=1,
                            final_model=MODEL, metrics={"accuracy": 0.9}),
    ]  # fmt: skip


async def _submit(env: Env, spec: Spec) -> str:
    reply = await env.client.post("/v1/jobs", json={"spec": spec()}, headers=env.auth("acme"))
    return str(reply.json()["job_id"])


async def test_stream_delivers_a_jobs_events_and_ends_on_job_completed(
    env: Env, spec: Spec
) -> None:
    job_id = await _submit(env, spec)
    handlers = HANDLERS.bind(Deps(jobs=env.jobs, hub=env.hub))
    other_job = Progress.create(source="t", job_id="another", phase=Phase.QUEUED, message="x")

    async def feed() -> None:
        for _ in range(1000):  # until the stream has subscribed
            if env.hub.subscribers(job_id):
                break
            await asyncio.sleep(0.01)
        for event in [other_job, *job_events(job_id, JobSpec.model_validate(spec()))]:
            await handlers[type(event)](event)

    feeding = asyncio.create_task(feed())
    content_type, frames = await asyncio.wait_for(read_stream(env, job_id), timeout=10)
    await feeding

    assert content_type.startswith("text/event-stream")
    assert [name for name, _ in frames] == [
        "status", "job.accepted", "progress", "round.completed", "job.completed",
    ]  # fmt: skip
    assert json.loads(frames[0][1])["status"] == "requested"
    assert json.loads(frames[3][1])["metrics"] == {"accuracy": 0.9}
    assert all(json.loads(data)["job_id"] == job_id for _, data in frames)
    assert env.hub.subscribers(job_id) == 0


async def test_late_subscriber_of_an_ended_job_gets_its_status_and_the_end(
    env: Env, spec: Spec
) -> None:
    job_id = await _submit(env, spec)
    for event in job_events(job_id, JobSpec.model_validate(spec())):
        await env.jobs.apply(event)

    _, frames = await read_stream(env, job_id)
    cancel = await env.client.post(f"/v1/jobs/{job_id}/cancel", headers=env.auth("acme"))

    [(name, data)] = frames
    status = json.loads(data)
    assert name == "status"
    assert (status["status"], status["rounds_completed"]) == ("completed", 1)
    assert status["participants"] == ["c1", "c2"]
    assert cancel.status_code == 409
