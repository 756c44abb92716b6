"""A site's ``round.declined`` shows in its job's event stream; a made-up job's is dropped."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from httpx_sse import aconnect_sse

from fedbus.events import DeclineReason, JobFailed, RoundDeclined
from fedbus_gateway.deps import Deps
from fedbus_gateway.handlers import HANDLERS

if TYPE_CHECKING:
    from .conftest import Env

Spec = Callable[..., dict[str, Any]]
REASON = DeclineReason(code="epsilon_too_large", message="asks 8; this site accepts at most 1")


def declined(job_id: str) -> RoundDeclined:
    return RoundDeclined.create(
        source="trainer", job_id=job_id, round=1, client_id="hospital-a",
        started_event_id="5f0c6d1e-8a7b-4c2d-9e3f-000000000007", reasons=[REASON],
    )  # fmt: skip


async def test_a_decline_is_streamed_with_the_job_and_a_made_up_job_is_not_recorded(
    env: Env, spec: Spec
) -> None:
    reply = await env.client.post("/v1/jobs", json={"spec": spec()}, headers=env.auth("acme"))
    job_id = str(reply.json()["job_id"])
    handlers = HANDLERS.bind(Deps(jobs=env.jobs, hub=env.hub))
    failed = JobFailed.create(
        source="orchestration", job_id=job_id, code="clients_declined", message="declined"
    )

    await handlers[RoundDeclined](declined(job_id))
    await handlers[RoundDeclined](declined("no-such-job"))
    await handlers[JobFailed](failed)

    path = f"/v1/jobs/{job_id}/events"
    resume = env.auth("acme") | {"Last-Event-ID": "0"}  # replay the job's record from the start
    async with aconnect_sse(env.client, "GET", path, headers=resume) as source:
        frames = [(sse.event, sse.data) async for sse in source.aiter_sse() if sse.data]
    names = [name for name, _ in frames]
    assert names[-2:] == ["round.declined", "job.failed"]
    data = json.loads(frames[-2][1])
    assert data["reasons"] == [REASON.model_dump()]
    assert data["client_id"] == "hospital-a"
    assert await env.jobs.events_after("no-such-job", after=0) == []


async def test_another_tenants_request_under_a_known_job_id_stays_out_of_its_stream(
    env: Env, spec: Spec
) -> None:
    """Outside producers pick their job ids: globex reusing acme's shows nothing to acme."""
    from fedbus.events import JobRequested, JobSpec

    reply = await env.client.post("/v1/jobs", json={"spec": spec()}, headers=env.auth("acme"))
    job_id = str(reply.json()["job_id"])
    handlers = HANDLERS.bind(Deps(jobs=env.jobs, hub=env.hub))
    before = await env.jobs.events_after(job_id, after=0)
    squat = JobRequested.create(source="upstream-globex", job_id=job_id, tenant="globex",
                                spec=JobSpec.model_validate(spec()))  # fmt: skip

    await handlers[JobRequested](squat)

    assert await env.jobs.events_after(job_id, after=0) == before
    view = await env.jobs.get(job_id)
    assert view is not None
    assert view.tenant == "acme"
