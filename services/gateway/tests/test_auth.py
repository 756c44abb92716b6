"""Who may call what: API keys, scopes, tenants, rate limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .conftest import Env


async def test_no_key_is_401_saying_how_to_send_one(env: Env) -> None:
    response = await env.client.get("/v1/jobs")

    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json()["detail"]


async def test_unknown_key_is_401(env: Env) -> None:
    response = await env.client.get("/v1/jobs", headers={"Authorization": "Bearer nope"})

    assert response.status_code == 401
    assert response.json() == {"detail": "unknown API key"}


async def test_x_api_key_header_and_hashed_keys_authenticate(env: Env) -> None:
    plain = await env.client.get("/v1/jobs", headers={"X-API-Key": env.keys["globex"]})
    hashed = await env.client.get("/v1/jobs", headers={"X-API-Key": env.keys["hashed"]})

    assert plain.status_code == 200
    assert hashed.status_code == 200


async def test_missing_scope_is_403_naming_the_scope(
    env: Env, spec: Callable[..., dict[str, Any]]
) -> None:
    response = await env.client.post(
        "/v1/jobs", json={"spec": spec()}, headers=env.auth("acme-reader")
    )

    assert response.status_code == 403
    assert "jobs:write" in response.json()["detail"]
    assert env.bus.events("job.requested") == []


async def test_another_tenants_job_is_404_everywhere(
    env: Env, spec: Callable[..., dict[str, Any]]
) -> None:
    created = await env.client.post("/v1/jobs", json={"spec": spec()}, headers=env.auth("acme"))
    job_id = created.json()["job_id"]

    show = await env.client.get(f"/v1/jobs/{job_id}", headers=env.auth("globex"))
    stream = await env.client.get(f"/v1/jobs/{job_id}/events", headers=env.auth("globex"))
    cancel = await env.client.post(f"/v1/jobs/{job_id}/cancel", headers=env.auth("globex"))
    listed = await env.client.get("/v1/jobs", headers=env.auth("globex"))

    assert [show.status_code, stream.status_code, cancel.status_code] == [404, 404, 404]
    assert job_id in show.json()["detail"]
    assert listed.json() == {"jobs": []}
    assert env.bus.events("job.cancel.requested") == []


async def test_rate_limit_answers_429_with_retry_after_then_recovers(env: Env) -> None:
    clock = env.limit(rate=0.5, burst=2)
    headers = env.auth("acme")

    first = [(await env.client.get("/v1/jobs", headers=headers)).status_code for _ in range(2)]
    limited = await env.client.get("/v1/jobs", headers=headers)
    other_key = await env.client.get("/v1/jobs", headers=env.auth("globex"))
    clock.now += 2.0
    recovered = await env.client.get("/v1/jobs", headers=headers)

    assert first == [200, 200]
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "2"
    assert "rate limit" in limited.json()["detail"]
    assert other_key.status_code == 200
    assert recovered.status_code == 200
