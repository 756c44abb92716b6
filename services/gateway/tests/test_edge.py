"""The edge: oversized bodies get 413 before anything reads them, broken ones a precise 400,
every error one shape, and a 405's ``Allow`` names every method of the path."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import FastAPI
from starlette.types import Message

from fedbus_gateway import create_app
from fedbus_gateway.settings import DEFAULT_MAX_BODY_BYTES, GatewaySettings

if TYPE_CHECKING:
    from .conftest import Env

Spec = Callable[..., dict[str, Any]]
LIMIT = 4096
MB = 1024 * 1024


@dataclass
class Exchange:
    """One request driven through the ASGI app by hand, counting the body bytes it pulled."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    pulled: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


async def call(
    app: FastAPI, method: str, path: str, *, headers: dict[str, str], chunks: Iterable[bytes]
) -> Exchange:
    """Send ``chunks`` as the body, one ``http.request`` message each, as a server would."""
    out = Exchange()
    pending = iter(chunks)
    nxt = next(pending, None)

    async def receive() -> Message:
        nonlocal nxt
        if nxt is None:
            return {"type": "http.disconnect"}
        chunk, nxt = nxt, next(pending, None)
        out.pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": nxt is not None}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            out.status = message["status"]
            out.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            out.body += message.get("body", b"")

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("203.0.113.7", 40000), "server": ("gateway.test", 80),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }  # fmt: skip
    await app(scope, receive, send)
    return out


def fifty_megabytes(chunk: int = 64 * 1024) -> Iterable[bytes]:
    """50 MB of a JSON-looking body, produced only as far as it is pulled."""
    yield b'{"spec": {"model": "'
    for _ in range(50 * MB // chunk):
        yield b"x" * chunk


@pytest.fixture
def small_limit_app(env: Env) -> FastAPI:
    return create_app(env.gateway, max_body_bytes=LIMIT)


def assert_error_body(body: Any) -> str:
    """The documented ErrorBody: exactly ``{"detail": str}``."""
    assert isinstance(body, dict)
    assert set(body) == {"detail"}, body
    detail = body["detail"]
    assert isinstance(detail, str)
    assert detail
    return detail


def test_the_default_limit_is_a_little_over_the_bus_largest_event() -> None:
    from fedbus.events import MAX_EVENT_BYTES

    assert GatewaySettings().gateway_max_body_bytes == DEFAULT_MAX_BODY_BYTES == MB
    assert MAX_EVENT_BYTES < DEFAULT_MAX_BODY_BYTES < 1.1 * MAX_EVENT_BYTES


@pytest.mark.parametrize("key", [None, "not-a-key"], ids=["no key", "wrong key"])
async def test_a_declared_50_mb_body_gets_413_before_auth_and_unread(
    small_limit_app: FastAPI, env: Env, key: str | None
) -> None:
    headers = {"content-type": "application/json", "content-length": str(50 * MB)}
    if key is not None:
        headers["authorization"] = f"Bearer {key}"

    out = await call(small_limit_app, "POST", "/v1/jobs", headers=headers,
                     chunks=fifty_megabytes())  # fmt: skip

    assert out.status == 413  # not 401: the key was never looked at
    assert f"limit of {LIMIT} bytes" in assert_error_body(out.json())
    assert out.pulled == 0
    assert env.bus.events("job.requested") == []
    assert env.jobs.jobs == {}


async def test_a_chunked_50_mb_body_is_cut_off_at_the_limit_with_413(
    small_limit_app: FastAPI, env: Env
) -> None:
    headers = {"content-type": "application/json", "transfer-encoding": "chunked"}

    out = await call(small_limit_app, "POST", "/v1/jobs", headers=headers,
                     chunks=fifty_megabytes(chunk=1024))  # fmt: skip

    assert out.status == 413
    assert f"limit of {LIMIT} bytes" in assert_error_body(out.json())
    assert LIMIT < out.pulled <= LIMIT + 1024  # stopped at the chunk that crossed the limit
    assert env.bus.events("job.requested") == []


async def test_a_declared_oversized_body_on_a_get_route_gets_413_too(
    small_limit_app: FastAPI,
) -> None:
    headers = {"content-length": str(LIMIT + 1), "authorization": "Bearer acme-secret-key"}

    out = await call(small_limit_app, "GET", "/v1/jobs", headers=headers, chunks=[b"x" * 5000])

    assert out.status == 413
    assert out.pulled == 0


async def test_a_body_at_the_limit_is_served(env: Env, spec: Spec) -> None:
    body = json.dumps({"spec": spec()}).encode()
    app = create_app(env.gateway, max_body_bytes=len(body))
    headers = {"content-type": "application/json", "content-length": str(len(body)),
               **env.auth("acme")}  # fmt: skip

    out = await call(app, "POST", "/v1/jobs", headers=headers, chunks=[body[:10], body[10:]])

    assert out.status == 202, out.body
    assert len(env.bus.events("job.requested")) == 1


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"\x8f\x00\xfe\xff\x13random bytes", "not valid UTF-8"),
        (b'{"spec": {"model": "\xff\xfe"}}', "not valid UTF-8: invalid start byte at position 20"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"spec": {"model": "mlp",', "not valid JSON: Expecting property name"),
        (b'{"spec": nope}', "at position 9"),
    ],
    ids=["random bytes", "invalid utf-8", "nested 100,000 deep", "truncated", "bad token"],
)
async def test_a_body_that_is_not_json_gets_400_saying_why(
    env: Env, body: bytes, says: str
) -> None:
    headers = {"content-type": "application/json", **env.auth("acme")}

    response = await env.client.post("/v1/jobs", content=body, headers=headers)

    assert response.status_code == 400
    detail = assert_error_body(response.json())
    assert says in detail
    assert "There was an error parsing the body" not in detail
    assert env.bus.events("job.requested") == []
    assert env.jobs.jobs == {}


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/v1/jobs", {"GET", "POST"}),
        ("DELETE", "/v1/jobs", {"GET", "POST"}),
        ("PUT", "/v1/jobs/some-job", {"GET"}),
        ("GET", "/v1/jobs/some-job/cancel", {"POST"}),
        ("POST", "/v1/models/m/versions/1", {"GET"}),
    ],
)
async def test_a_405_allow_header_names_every_method_of_the_path(
    env: Env, method: str, path: str, allowed: set[str]
) -> None:
    response = await env.client.request(method, path, headers=env.auth("acme"))

    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed
    assert method in assert_error_body(response.json())


async def test_an_unknown_path_gets_404_with_the_error_shape(env: Env) -> None:
    response = await env.client.get("/v1/nothing-here", headers=env.auth("acme"))

    assert response.status_code == 404
    assert_error_body(response.json())


async def test_auth_errors_keep_the_error_shape_and_challenge(env: Env) -> None:
    response = await env.client.get("/v1/jobs")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert_error_body(response.json())
