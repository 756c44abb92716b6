"""Who may call what: API keys, scopes, tenants, rate limits."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from fedbus_gateway import create_app, key_sha256
from fedbus_gateway.auth import FailureLimiter

from .fakes import FakeClock

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


def _client_at(env: Env, address: str) -> httpx.AsyncClient:
    """A client calling the same gateway from another address."""
    transport = httpx.ASGITransport(app=create_app(env.gateway), client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway.test")


def _limit_failures(env: Env, limit: int) -> FakeClock:
    clock = FakeClock()
    env.gateway.failures = FailureLimiter(limit=limit, window_s=60.0, clock=clock)
    return clock


async def test_guessing_keys_gets_429_with_retry_after_even_for_the_right_key(
    env: Env,
) -> None:
    clock = _limit_failures(env, limit=5)
    guesses = [{"Authorization": f"Bearer guess-{i}"} for i in range(8)]

    answers = [(await env.client.get("/v1/jobs", headers=h)).status_code for h in guesses]
    right_key_here = await env.client.get("/v1/jobs", headers=env.auth("acme"))
    clock.now += 20
    later = await env.client.get("/v1/jobs", headers=env.auth("acme"))
    async with _client_at(env, "10.9.8.7") as elsewhere:
        right_key_elsewhere = await elsewhere.get("/v1/jobs", headers=env.auth("acme"))
    clock.now += 40  # the window is over
    after_window = await env.client.get("/v1/jobs", headers=env.auth("acme"))

    assert answers == [401] * 5 + [429] * 3
    assert right_key_here.status_code == 429
    assert right_key_here.headers["Retry-After"] == "60"
    assert "failed authentications" in right_key_here.json()["detail"]
    assert later.headers["Retry-After"] == "40"
    assert right_key_elsewhere.status_code == 200
    assert after_window.status_code == 200


async def test_the_x_api_key_header_counts_too_and_a_missing_key_does_not(env: Env) -> None:
    _limit_failures(env, limit=2)

    missing = [(await env.client.get("/v1/jobs")).status_code for _ in range(3)]
    wrong = [
        (await env.client.get("/v1/jobs", headers={"X-API-Key": f"x-{i}"})).status_code
        for i in range(3)
    ]

    assert missing == [401, 401, 401]
    assert wrong == [401, 401, 429]


async def test_failed_authentications_are_logged_once_per_window_without_the_key(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    _limit_failures(env, limit=3)
    secret_guess = "sk-live-0123456789abcdef-guess"
    caplog.set_level(logging.DEBUG)

    for _ in range(10):
        await env.client.get("/v1/jobs", headers={"Authorization": f"Bearer {secret_guess}"})
    for i in range(3):
        await env.client.get("/v1/jobs", headers={"X-API-Key": f"{secret_guess}-{i}"})

    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert secret_guess not in caplog.text
    assert all(secret_guess not in str(r.args) for r in caplog.records)
    assert len(warnings) == 2  # the first failure, then the address being refused
    assert all("127.0.0.1" in r.getMessage() for r in warnings)
    assert key_sha256(secret_guess)[:8] in warnings[0].getMessage()


def test_the_failure_table_stays_bounded_and_keeps_the_newest_counts() -> None:
    now = [0.0]
    limiter = FailureLimiter(limit=2, window_s=60, clock=lambda: now[0], max_addresses=3)
    limiter.fail("10.0.0.1")
    limiter.fail("10.0.0.1")
    assert limiter.blocked("10.0.0.1") == 60

    for i in range(2, 1002):  # a spray of addresses within the window
        now[0] += 0.01
        limiter.fail(f"10.0.{i // 256}.{i % 256}")

    assert len(limiter._windows) == 3  # never more than max_addresses
    assert limiter.blocked("10.0.0.1") == 0  # the oldest went first
    last = "10.0.3.233"
    limiter.fail(last)
    assert limiter.blocked(last) > 0  # the newest keep their counts
