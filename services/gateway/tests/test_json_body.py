"""Bodies parsed by pydantic-core read exactly as ``json.loads`` reads them, refusals included."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from fedbus_gateway.api.errors import add_error_handlers
from fedbus_gateway.api.json_body import FastJsonRequest, FastJsonRoute

BODIES = [
    b'{"inputs": [[0.1, -0.0, 1e-320, 1.7976931348623157e308, 5e-324, 3]]}',
    b'{"inputs": [[NaN, Infinity, -Infinity, 1e400]]}',  # json.loads reads these too
    b'{"inputs": [[123456789012345678901234567890]]}',
    b'{"a": 1, "a": 2}',  # the last one wins
    b' {"text": "caf\\u00e9 \\ud83d\\ude00"} ',
    b"[" * 500 + b"]" * 500,  # deeper than pydantic-core's limit of 200: json.loads reads it
]


def body_of(raw: bytes) -> Any:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    request = FastJsonRequest({"type": "http", "method": "POST", "headers": []}, receive)
    return request.json()


@pytest.mark.parametrize("raw", BODIES)
async def test_a_body_reads_as_json_loads_reads_it(raw: bytes) -> None:
    parsed = await body_of(raw)

    assert json.dumps(parsed) == json.dumps(json.loads(raw))


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"a": 1', json.JSONDecodeError),
        (b'{"a": 1} x', json.JSONDecodeError),
        (b'{"a": "\xff"}', UnicodeDecodeError),
        (b"", json.JSONDecodeError),
    ],
)
async def test_a_refused_body_raises_what_json_loads_raises(
    raw: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await body_of(raw)


def test_a_route_answers_bad_json_with_the_usual_400() -> None:
    router = APIRouter(route_class=FastJsonRoute)

    @router.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    app = FastAPI()
    app.include_router(router)
    add_error_handlers(app)
    client = TestClient(app)
    headers = {"Content-Type": "application/json"}

    ok = client.post("/echo", content=b'{"x": [1, 2.5]}', headers=headers)
    broken = client.post("/echo", content=b'{"x": [1', headers=headers)
    not_utf8 = client.post("/echo", content=b'{"x": "\xff"}', headers=headers)

    assert ok.json() == {"x": [1, 2.5]}
    assert broken.status_code == 400
    assert broken.json()["detail"].startswith("the body is not valid JSON: Expecting")
    assert not_utf8.status_code == 400
    assert "not valid UTF-8" in not_utf8.json()["detail"]
