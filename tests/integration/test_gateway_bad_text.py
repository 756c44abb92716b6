"""Text PostgreSQL cannot store, and integers its columns cannot hold, against the real gateway.

Each reproducer of issue 19 (a 500 from asyncpg's ``CharacterNotInRepertoireError``, a 502 for
``out of int32 range``) now gets a 422 naming the field, and no row of the caller's tenant is
written to ``gateway_jobs``.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import httpx
import pytest

from fedbus.settings import FedbusSettings
from tests.integration.gateway_process import Gateway

SPEC = {"mode": "federated", "model": "mlp", "dataset": "digits", "rounds": 1,
        "clients_per_round": 2, "min_clients": 2}  # fmt: skip
NUL = "contains a NUL character, which cannot be stored"
SURROGATE = "contains an unpaired surrogate, which cannot be stored"

# The request bodies as a client sends them: JSON text with \u0000 and \ud800 escapes.
BODIES: list[tuple[str, str, str]] = [
    (json.dumps({"spec": SPEC, "idempotency_key": "a\x00b"}), "idempotency_key", NUL),
    (json.dumps({"spec": {**SPEC, "model": "cnn\x00"}}), "spec.model", NUL),
    (json.dumps({"spec": {**SPEC, "dataset": "\ud800"}}), "spec.dataset", SURROGATE),
    (
        json.dumps({"spec": {**SPEC, "strategy": {"name": "fedavg", "options": {"lr\x00": 1}}}}),
        "spec.strategy.options.lr\x00.[key]",
        NUL,
    ),
]
# The job id paths, with a NUL percent-encoded.
JOB_PATHS = [
    ("GET", "/v1/jobs/a%00b"),
    ("GET", "/v1/jobs/a%00b/events"),
    ("POST", "/v1/jobs/a%00b/cancel"),
]


async def tenant_rows(settings: FedbusSettings, tenant: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        rows = await conn.fetch(
            "SELECT job_id, idempotency_key FROM gateway_jobs WHERE tenant = $1", tenant
        )
    finally:
        await conn.close()
    return [dict(r) for r in rows]


def named(response: httpx.Response) -> list[tuple[str, str]]:
    return [(e["field"], e["message"]) for e in response.json()["errors"]]


async def test_unstorable_text_and_out_of_range_versions_are_422_and_write_no_row(
    gateway: Gateway, settings: FedbusSettings
) -> None:
    headers = {**gateway.auth("a"), "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        posted = [
            (await client.post("/v1/jobs", content=body.encode("ascii"), headers=headers), f, m)
            for body, f, m in BODIES
        ]
        by_path = [
            await client.request(method, path, headers=gateway.auth("a"))
            for method, path in JOB_PATHS
        ]
        not_utf8 = await client.get("/v1/jobs/%ED%A0%80", headers=gateway.auth("a"))
        versions = [
            await client.get(f"/v1/models/x/versions/{v}", headers=gateway.auth("a"))
            for v in ("2147483648", "0", "-1")
        ]

    for response, field, message in posted:
        assert response.status_code == 422, response.text
        assert (field, message) in named(response)
    for response in by_path:
        assert response.status_code == 422, response.text
        assert named(response) == [("path.job_id", NUL)]
    # The server decodes the encoded surrogate (not UTF-8) to U+FFFD: valid text, no such job.
    assert not_utf8.status_code == 404, not_utf8.text
    for response in versions:
        # The registry URL points at nothing: a 503 would mean the gateway asked it.
        assert response.status_code == 422, response.text
        assert [field for field, _ in named(response)] == ["path.version"]
    assert await tenant_rows(settings, gateway.tenant("a")) == []
    assert "CharacterNotInRepertoireError" not in gateway.proc.text()


@pytest.mark.parametrize("key", ["clé-日本-\\ud83d\\ude00", "plain"])
async def test_valid_unicode_text_is_stored_as_sent(
    gateway: Gateway, settings: FedbusSettings, key: str
) -> None:
    # A surrogate pair escaped in JSON is one character (U+1F600): valid, stored.
    body = '{"spec": %s, "idempotency_key": "%s"}' % (json.dumps(SPEC), key)  # noqa: UP031
    headers = {**gateway.auth("a"), "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        response = await client.post("/v1/jobs", content=body.encode("utf-8"), headers=headers)

    assert response.status_code == 202, response.text
    assert await tenant_rows(settings, gateway.tenant("a")) == [
        {"job_id": response.json()["job_id"], "idempotency_key": json.loads(f'"{key}"')}
    ]
