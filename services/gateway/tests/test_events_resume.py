"""``GET /v1/jobs/{id}/events`` with ``Last-Event-ID``: a dropped stream resumes from the record."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from httpx_sse import aconnect_sse

from fedbus.events import Event, JobSpec, Phase, Progress
from fedbus_gateway import JobEventHub
from fedbus_gateway.deps import Deps
from fedbus_gateway.handlers import HANDLERS
from fedbus_gateway.store import StoredEvent

from .test_events_stream import job_events

if TYPE_CHECKING:
    from .conftest import Env

Spec = Callable[..., dict[str, Any]]
Frame = tuple[str, str, dict[str, Any]]


async def read_frames(env: Env, job_id: str, *, last_id: str | None = None) -> list[Frame]:
    """The stream's (event, id, data) frames until the gateway ends it."""
    headers = env.auth("acme") | ({"Last-Event-ID": last_id} if last_id is not None else {})
    path = f"/v1/jobs/{job_id}/events"
    async with aconnect_sse(env.client, "GET", path, headers=headers) as source:
        assert source.response.status_code == 200
        return [(s.event, s.id, json.loads(s.data)) async for s in source.aiter_sse() if s.data]


async def _submit(env: Env, spec: Spec) -> str:
    reply = await env.client.post("/v1/jobs", json={"spec": spec()}, headers=env.auth("acme"))
    return str(reply.json()["job_id"])


async def _until_subscribed(env: Env, job_id: str) -> None:
    for _ in range(1000):
        if env.gateway.hub.subscribers(job_id):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the stream never subscribed")


def _ids(frames: list[Frame]) -> list[str]:
    return [data["event_id"] for name, _, data in frames if name != "status"]


async def test_a_dropped_stream_resumes_with_every_event_once(env: Env, spec: Spec) -> None:
    # A hub that drops a stream one event behind: the second event in a row drops it.
    hub = JobEventHub(max_queue=1)
    env.gateway.hub = hub
    handlers = HANDLERS.bind(Deps(jobs=env.jobs, hub=hub))
    job_id = await _submit(env, spec)
    events = job_events(job_id, JobSpec.model_validate(spec()))

    first = asyncio.create_task(read_frames(env, job_id))
    await _until_subscribed(env, job_id)
    for event in events[:2]:  # no await yields in between: the stream falls behind
        await handlers[type(event)](event)
    dropped = await asyncio.wait_for(first, 10)
    for event in events[2:]:  # while nobody is connected
        await handlers[type(event)](event)
    resumed = await asyncio.wait_for(read_frames(env, job_id, last_id=dropped[-1][1]), 10)

    assert [name for name, _, _ in dropped] == ["status", "job.accepted"]
    assert [name for name, _, _ in resumed] == [
        "status", "progress", "round.completed", "job.completed",
    ]  # fmt: skip
    assert resumed[0][2]["status"] == "completed"
    assert _ids(dropped) + _ids(resumed) == [e.event_id for e in events]
    seqs = [int(i) for name, i, _ in dropped + resumed if name != "status"]
    assert seqs == sorted(set(seqs))
    assert hub.subscribers(job_id) == 0


async def test_last_event_id_0_replays_an_ended_jobs_whole_record(env: Env, spec: Spec) -> None:
    handlers = HANDLERS.bind(Deps(jobs=env.jobs, hub=env.hub))
    job_id = await _submit(env, spec)
    events = job_events(job_id, JobSpec.model_validate(spec()))
    for event in events:
        await handlers[type(event)](event)

    replayed = await read_frames(env, job_id, last_id="0")
    plain = await read_frames(env, job_id)

    assert _ids(replayed) == [e.event_id for e in events]
    assert replayed[0][:2] == ("status", "")  # the status frame carries no id
    assert [name for name, _, _ in plain] == ["status"]


async def test_events_arriving_while_the_record_is_read_come_once(
    env: Env, spec: Spec, monkeypatch: pytest.MonkeyPatch
) -> None:
    handlers = HANDLERS.bind(Deps(jobs=env.jobs, hub=env.hub))
    job_id = await _submit(env, spec)
    accepted, progress, *rest = job_events(job_id, JobSpec.model_validate(spec()))
    await handlers[type(accepted)](accepted)
    read_record = env.jobs.events_after
    caught_up = asyncio.Event()

    async def racing(job: str, *, after: int, limit: int = 500) -> list[StoredEvent]:
        # An event consumed between the stream's subscription and its read of the record:
        # it is in both, live and recorded.
        if not caught_up.is_set():
            await handlers[Progress](progress)
            caught_up.set()
        return await read_record(job, after=after, limit=limit)

    async def feed() -> None:
        await caught_up.wait()
        for event in [rest[0], rest[0], rest[1]]:  # round.completed comes twice (redelivery)
            await handlers[type(event)](event)

    monkeypatch.setattr(env.jobs, "events_after", racing)
    feeding = asyncio.create_task(feed())
    frames = await asyncio.wait_for(read_frames(env, job_id, last_id="0"), 10)
    await feeding

    assert _ids(frames) == [e.event_id for e in [accepted, progress, *rest]]


async def test_a_live_redelivery_is_streamed_once(env: Env, spec: Spec) -> None:
    handlers = HANDLERS.bind(Deps(jobs=env.jobs, hub=env.hub))
    job_id = await _submit(env, spec)
    events = job_events(job_id, JobSpec.model_validate(spec()))
    stray = Progress.create(source="t", job_id=job_id, phase=Phase.QUEUED, message="x")
    sent: list[Event] = [events[0], events[1], events[0], stray, events[1], *events[2:]]

    reader = asyncio.create_task(read_frames(env, job_id))
    await _until_subscribed(env, job_id)
    for event in sent:
        await handlers[type(event)](event)
    frames = await asyncio.wait_for(reader, 10)

    assert _ids(frames) == [e.event_id for e in [events[0], events[1], stray, *events[2:]]]


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "99999999999999999999"])
async def test_a_bad_last_event_id_is_422_naming_the_header(
    env: Env, spec: Spec, value: str
) -> None:
    job_id = await _submit(env, spec)

    reply = await env.client.get(
        f"/v1/jobs/{job_id}/events", headers=env.auth("acme") | {"Last-Event-ID": value}
    )

    assert reply.status_code == 422
    assert "Last-Event-ID" in reply.json()["detail"]


async def test_progress_of_a_job_the_gateway_does_not_know_is_not_recorded(env: Env) -> None:
    handlers = HANDLERS.bind(Deps(jobs=env.jobs, hub=env.hub))
    made_up = Progress.create(source="t", job_id="no-such-job", phase=Phase.QUEUED, message="x")

    await handlers[Progress](made_up)

    assert await env.jobs.events_after("no-such-job", after=0) == []
