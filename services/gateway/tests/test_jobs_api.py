"""Submitting, listing, showing and cancelling jobs through the API."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from unittest.mock import ANY

import pytest

from fedbus.events import JobAccepted, JobCancelRequested, JobRequested, JobSpec, codec
from fedbus_gateway.jobs import JobView

if TYPE_CHECKING:
    from .conftest import Env

Spec = Callable[..., dict[str, Any]]


async def test_submit_publishes_job_requested_for_the_keys_tenant(env: Env, spec: Spec) -> None:
    response = await env.client.post("/v1/jobs", json={"spec": spec()}, headers=env.auth("acme"))

    assert response.status_code == 202
    body = response.json()
    job_id = body["job_id"]
    assert body["status"] == "requested"
    assert body["links"] == {
        "self": f"/v1/jobs/{job_id}",
        "events": f"/v1/jobs/{job_id}/events",
        "cancel": f"/v1/jobs/{job_id}/cancel",
    }
    [event] = env.bus.events("job.requested")
    assert isinstance(event, JobRequested)
    assert (event.job_id, event.tenant, event.source) == (job_id, "acme", "gateway")
    assert event.spec == JobSpec.model_validate(spec())


async def test_bad_spec_is_422_naming_the_field(env: Env, spec: Spec) -> None:
    response = await env.client.post(
        "/v1/jobs", json={"spec": spec(rounds="three")}, headers=env.auth("acme")
    )

    assert response.status_code == 422
    assert response.json()["detail"].startswith("spec.rounds:")
    assert [e["field"] for e in response.json()["errors"]] == ["spec.rounds"]
    assert env.bus.events("job.requested") == []


async def test_missing_field_and_bad_enum_are_both_named(env: Env, spec: Spec) -> None:
    body = spec(mode="sideways")
    del body["dataset"]

    response = await env.client.post("/v1/jobs", json={"spec": body}, headers=env.auth("acme"))

    fields = {e["field"] for e in response.json()["errors"]}
    assert response.status_code == 422
    assert fields == {"spec.mode", "spec.dataset"}


async def test_same_idempotency_key_returns_the_same_job_once(env: Env, spec: Spec) -> None:
    request = {"spec": spec(), "idempotency_key": "nightly-1"}

    first = await env.client.post("/v1/jobs", json=request, headers=env.auth("acme"))
    again = await env.client.post("/v1/jobs", json=request, headers=env.auth("acme"))
    other_tenant = await env.client.post("/v1/jobs", json=request, headers=env.auth("globex"))

    assert first.json()["job_id"] == again.json()["job_id"]
    assert other_tenant.json()["job_id"] != first.json()["job_id"]
    assert len(env.bus.events("job.requested")) == 2


async def test_reusing_a_key_for_another_spec_is_409(env: Env, spec: Spec) -> None:
    await env.client.post(
        "/v1/jobs", json={"spec": spec(), "idempotency_key": "k"}, headers=env.auth("acme")
    )

    clash = await env.client.post(
        "/v1/jobs", json={"spec": spec(rounds=9), "idempotency_key": "k"}, headers=env.auth("acme")
    )

    assert clash.status_code == 409
    assert "'k'" in clash.json()["detail"]


async def test_list_is_newest_first_and_filters_by_status(env: Env, spec: Spec) -> None:
    ids = []
    for rounds in (1, 2, 3):
        reply = await env.client.post(
            "/v1/jobs", json={"spec": spec(rounds=rounds)}, headers=env.auth("acme")
        )
        ids.append(reply.json()["job_id"])
        env.clock.now += 1
    accepted = JobAccepted.create(
        source="orchestration", job_id=ids[0], tenant="acme", request_event_id=ids[0],
        spec=JobSpec.model_validate(spec(rounds=1)),
    )  # fmt: skip
    await env.jobs.apply(accepted)

    everything = await env.client.get("/v1/jobs", headers=env.auth("acme"))
    only_accepted = await env.client.get("/v1/jobs?status=accepted", headers=env.auth("acme"))
    bad_filter = await env.client.get("/v1/jobs?status=sleeping", headers=env.auth("acme"))

    listed = [j["job_id"] for j in everything.json()["jobs"]]
    assert sorted(listed) == sorted(ids)
    created = [j["created_at"] for j in everything.json()["jobs"]]
    assert created == sorted(created, reverse=True)
    assert [j["job_id"] for j in only_accepted.json()["jobs"]] == [ids[0]]
    assert bad_filter.status_code == 422
    assert bad_filter.json()["detail"].startswith("query.status:")


async def test_show_returns_the_read_model(env: Env, spec: Spec) -> None:
    reply = await env.client.post("/v1/jobs", json={"spec": spec()}, headers=env.auth("acme"))
    job_id = reply.json()["job_id"]

    shown = await env.client.get(f"/v1/jobs/{job_id}", headers=env.auth("acme-reader"))
    missing = await env.client.get("/v1/jobs/no-such-job", headers=env.auth("acme"))

    assert shown.status_code == 200
    assert shown.json()["status"] == "requested"
    assert shown.json()["spec"]["dataset"] == "digits"
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no job 'no-such-job'"}


async def test_cancel_publishes_job_cancel_requested(env: Env, spec: Spec) -> None:
    reply = await env.client.post("/v1/jobs", json={"spec": spec()}, headers=env.auth("acme"))
    job_id = reply.json()["job_id"]

    response = await env.client.post(
        f"/v1/jobs/{job_id}/cancel", json={"reason": "wrong data"}, headers=env.auth("acme")
    )

    assert response.status_code == 202
    [event] = env.bus.events("job.cancel.requested")
    assert isinstance(event, JobCancelRequested)
    assert (event.job_id, event.tenant, event.requested_by) == (job_id, "acme", "acme-ci")
    assert event.reason == "wrong data"


async def test_openapi_documents_every_route(env: Env) -> None:
    schema = (await env.client.get("/openapi.json")).json()
    docs = await env.client.get("/docs")

    paths = schema["paths"]
    assert docs.status_code == 200
    assert set(paths) >= {
        "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel", "/v1/jobs/{job_id}/events",
        "/v1/models", "/v1/models/{name}/versions", "/v1/models/{name}/versions/{version}",
    }  # fmt: skip
    assert {"202", "401", "403", "422"} <= set(paths["/v1/jobs"]["post"]["responses"])
    assert "404" in paths["/v1/jobs/{job_id}"]["get"]["responses"]


async def post_spec(env: Env, spec: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = await env.client.post("/v1/jobs", json={"spec": spec}, headers=env.auth("acme"))
    return response.status_code, response.json()


@pytest.mark.parametrize(
    ("overrides", "field", "kind", "words"),
    [
        ({"round": 5}, "spec.round", "unknown_field", "did you mean 'rounds'?"),
        ({"training": {"epochs": 2}}, "spec.training.epochs", "unknown_field",
         "did you mean 'local_epochs'?"),
        ({"rounds": True}, "spec.rounds", "invalid_type", "the boolean true"),
        ({"rounds": "3"}, "spec.rounds", "invalid_type", 'the string "3"'),
        ({"seed": False}, "spec.seed", "invalid_type", "the boolean false"),
        ({"rounds": 0}, "spec.rounds", "invalid_value", "at least 1"),
        ({"privacy": {"mode": "local_dp", "target_epsilon": 3.0, "delta": 1.5,
                      "clipping_norm": 1.0}}, "spec.privacy.delta", "invalid_value", "(0, 1)"),
        ({"privacy": {"mode": "local_dp", "target_epsilon": -1.0, "delta": 1e-5,
                      "clipping_norm": 1.0}}, "spec.privacy.target_epsilon", "invalid_value",
         "positive"),
        ({"strategy": {"name": "fedprox"}}, "spec.strategy.options.proximal_mu",
         "missing_field", "fedprox needs option proximal_mu"),
        ({"strategy": {"name": "trimmed_mean", "options": {"beta": 0.9}}},
         "spec.strategy.options.beta", "unknown_field", "trim_ratio"),
        ({"privacy": {"mode": "none", "target_epsilon": -1}}, "spec.privacy.target_epsilon",
         "invalid_value", "no effect without DP"),
        ({"model": "m" * 201}, "spec.model", "invalid_value", "at most 200 characters"),
    ],
)  # fmt: skip
async def test_each_bad_spec_is_422_naming_the_field_before_anything_is_stored(
    env: Env, spec: Spec, overrides: dict[str, Any], field: str, kind: str, words: str
) -> None:
    status, body = await post_spec(env, spec(**overrides))

    assert status == 422
    assert body["errors"] == [{"field": field, "message": ANY, "type": kind}]
    assert words in body["errors"][0]["message"]
    assert body["detail"].startswith(f"{field}: ")
    assert env.jobs.jobs == {}
    assert env.bus.events("job.requested") == []


async def test_every_problem_of_a_spec_is_listed_in_one_422(env: Env, spec: Spec) -> None:
    status, body = await post_spec(env, spec(round=5, rounds=True, seed=False))

    assert status == 422
    assert [(e["field"], e["type"]) for e in body["errors"]] == [
        ("spec.round", "unknown_field"),
        ("spec.rounds", "invalid_type"),
        ("spec.seed", "invalid_type"),
    ]


async def test_an_idempotency_key_must_be_a_string(env: Env, spec: Spec) -> None:
    response = await env.client.post(
        "/v1/jobs", json={"spec": spec(), "idempotency_key": 7}, headers=env.auth("acme")
    )

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["idempotency_key"]


async def test_a_request_whose_event_the_bus_cannot_take_is_413_before_the_key_is_claimed(
    env: Env, spec: Spec, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every field is within its own limit, but the event is over the bus's (lowered) maximum.
    monkeypatch.setattr(codec, "MAX_EVENT_BYTES", 700)
    claimed: list[str] = []
    claim = env.jobs.claim

    async def counting_claim(view: JobView) -> JobView:
        claimed.append(view.job_id)
        return await claim(view)

    monkeypatch.setattr(env.jobs, "claim", counting_claim)
    request = {"spec": spec(model="m" * 200, dataset="d" * 200), "idempotency_key": "k" * 200}

    response = await env.client.post("/v1/jobs", json=request, headers=env.auth("acme"))

    assert response.status_code == 413
    assert "bytes; the event bus takes at most 700" in response.json()["detail"]
    assert claimed == []
    assert env.bus.events("job.requested") == []


async def test_openapi_documents_the_spec_as_checked_closed_at_every_level(env: Env) -> None:
    doc = (await env.client.get("/openapi.json")).json()
    request = doc["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    ref = request["schema"]["$ref"].rsplit("/", 1)[-1]
    schema = doc["components"]["schemas"][ref]["properties"]["spec"]
    props = schema["properties"]

    for record in (schema, props["training"], props["strategy"], props["privacy"]):
        assert record["additionalProperties"] is False
    assert props["model"]["maxLength"] == props["dataset"]["maxLength"] == 200
    assert props["strategy"]["properties"]["options"]["maxProperties"] == 32
    assert props["rounds"]["type"] == "integer"  # JSON Schema: true is not an integer
    assert props["rounds"]["minimum"] == 1
