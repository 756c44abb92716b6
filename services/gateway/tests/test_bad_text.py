"""Text that PostgreSQL cannot store, and integers its columns cannot hold, get a 422 naming
the parameter or field, and never reach the job store, the bus or the registry."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from fedbus_gateway.jobs import JobView

from .fakes import FakeJobStore

if TYPE_CHECKING:
    from .conftest import Env

NUL = "contains a NUL character, which cannot be stored"
SURROGATE = "contains an unpaired surrogate, which cannot be stored"
Spec = Callable[..., dict[str, Any]]


class WatchedJobStore(FakeJobStore):
    """The fake store, noting each job id it is asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    async def claim(self, view: JobView) -> JobView:
        self.asked.append(view.job_id)
        return await super().claim(view)

    async def get(self, job_id: str) -> JobView | None:
        self.asked.append(job_id)
        return await super().get(job_id)


@pytest.fixture
def store(env: Env) -> WatchedJobStore:
    watched = WatchedJobStore()
    env.gateway.jobs = watched
    return watched


def raw_json(body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """The request as a client writes it: ``\\u0000`` and ``\\ud800`` escapes in JSON text."""
    text = json.dumps(body)  # ensure_ascii: NUL and lone surrogates become escapes
    assert "\\u0000" in text or "\\ud" in text
    return {
        "content": text.encode("ascii"),
        "headers": {**headers, "content-type": "application/json"},
    }


def field_errors(body: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(e["field"], e["message"], e["type"]) for e in body["errors"]]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"idempotency_key": "a\x00b"}, "idempotency_key", NUL),
        ({"idempotency_key": "\udc00k"}, "idempotency_key", SURROGATE),
        ({"spec": {"model": "cnn\x00"}}, "spec.model", NUL),
        ({"spec": {"dataset": "\ud800"}}, "spec.dataset", SURROGATE),
        (
            {"spec": {"strategy": {"name": "fedavg", "options": {"server\x00lr": 1.0}}}},
            "spec.strategy.options.server\x00lr.[key]",
            NUL,
        ),
        (
            {"spec": {"strategy": {"name": "fedavg", "options": {"lr\udfff": 1.0}}}},
            "spec.strategy.options.lr\\udfff.[key]",
            SURROGATE,
        ),
    ],
    ids=[
        "idempotency-key",
        "idempotency-key-surrogate",
        "model",
        "dataset",
        "strategy-option-key",
        "surrogate-option-key",
    ],
)
async def test_a_submission_with_unstorable_text_is_422_and_stores_nothing(
    env: Env, store: WatchedJobStore, spec: Spec, change: dict[str, Any], field: str, message: str
) -> None:
    body: dict[str, Any] = {"spec": spec(**change.get("spec", {}))}
    if "idempotency_key" in change:
        body["idempotency_key"] = change["idempotency_key"]

    response = await env.client.post("/v1/jobs", **raw_json(body, env.auth("acme")))

    assert response.status_code == 422
    assert (field, message) in [e[:2] for e in field_errors(response.json())]
    assert store.asked == []
    assert store.jobs == {}
    assert env.bus.events("job.requested") == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/jobs/a%00b"),
        ("GET", "/v1/jobs/a%00b/events"),
        ("POST", "/v1/jobs/a%00b/cancel"),
        ("GET", "/v1/jobs/%00"),
    ],
)
async def test_a_job_id_with_a_nul_is_422_naming_it_before_the_store_is_asked(
    env: Env, store: WatchedJobStore, method: str, path: str
) -> None:
    response = await env.client.request(method, path, headers=env.auth("acme"))

    assert response.status_code == 422
    assert field_errors(response.json()) == [("path.job_id", NUL, "string_nul")]
    assert "path.job_id" in response.json()["detail"]
    assert store.asked == []
    assert env.bus.events("job.cancel.requested") == []


async def test_a_path_of_invalid_utf8_is_a_plain_404(env: Env, store: WatchedJobStore) -> None:
    # The encoded surrogate U+D800 is not UTF-8: the server decodes it to U+FFFD, valid text.
    response = await env.client.get("/v1/jobs/%ED%A0%80", headers=env.auth("acme"))

    assert response.status_code == 404
    assert store.asked == ["\ufffd\ufffd\ufffd"]


async def test_a_job_id_in_any_valid_unicode_is_looked_up(env: Env, store: WatchedJobStore) -> None:
    response = await env.client.get("/v1/jobs/mod%C3%A8le-%F0%9F%98%80", headers=env.auth("acme"))

    assert response.status_code == 404
    assert store.asked == ["modèle-😀"]


async def test_a_cancel_reason_with_a_nul_is_422(
    env: Env, store: WatchedJobStore, spec: Spec
) -> None:
    submitted = await env.client.post("/v1/jobs", json={"spec": spec()}, headers=env.auth("acme"))
    job_id = submitted.json()["job_id"]

    response = await env.client.post(
        f"/v1/jobs/{job_id}/cancel", **raw_json({"reason": "stop\x00"}, env.auth("acme"))
    )

    assert response.status_code == 422
    assert field_errors(response.json()) == [("reason", NUL, "string_nul")]
    assert env.bus.events("job.cancel.requested") == []


@pytest.mark.parametrize(
    "query", ["status=%00", "limit=2147483648", "limit=0", "limit=1001", "limit=-1"]
)
async def test_bad_query_parameters_are_422_naming_them(
    env: Env, store: WatchedJobStore, query: str
) -> None:
    response = await env.client.get(f"/v1/jobs?{query}", headers=env.auth("acme"))

    assert response.status_code == 422
    assert [e[0] for e in field_errors(response.json())] == [f"query.{query.split('=')[0]}"]


@pytest.mark.parametrize("version", ["2147483648", "0", "-1", "99999999999999999999999"])
async def test_a_model_version_outside_the_registrys_integer_is_422_without_asking_it(
    env: Env, version: str
) -> None:
    response = await env.client.get(f"/v1/models/m/versions/{version}", headers=env.auth("acme"))

    assert response.status_code == 422
    assert [e[0] for e in field_errors(response.json())] == ["path.version"]
    assert env.registry.requests == []


async def test_the_largest_model_version_is_asked_of_the_registry(env: Env) -> None:
    response = await env.client.get("/v1/models/m/versions/2147483647", headers=env.auth("acme"))

    assert response.status_code == 404
    assert env.registry.requests[-1].url.path == "/v1/models/m/versions/2147483647"


@pytest.mark.parametrize("path", ["/v1/models/m%00/versions", "/v1/models/m%00/versions/1"])
async def test_a_model_name_with_a_nul_is_422_without_asking_the_registry(
    env: Env, path: str
) -> None:
    response = await env.client.get(path, headers=env.auth("acme"))

    assert response.status_code == 422
    assert field_errors(response.json()) == [("path.name", NUL, "string_nul")]
    assert env.registry.requests == []
