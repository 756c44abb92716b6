"""The read API over the in-memory store, through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from fedbus.events import (
    JobMode,
    JobSpec,
    JobStatus,
    ModelRef,
    PrivacyGuarantee,
    PrivacyMode,
    Strategy,
    StrategySpec,
)
from fedbus_registry.api import build_app
from fedbus_registry.versions import JobInfo, NewVersion, RoundRecord

from .fakes import FakeRegistryStore

REF = ModelRef(object_key="jobs/j/round-2/global/" + "d" * 64, size_bytes=7, sha256="d" * 64)


def version_of(tenant: str, job_id: str, name: str = "cnn-mnist") -> NewVersion:
    return NewVersion(
        tenant=tenant,
        name=name,
        job_id=job_id,
        status=JobStatus.COMPLETED,
        rounds=2,
        metrics={"accuracy": 0.93},
        artifact=REF,
        strategy=StrategySpec(name=Strategy.FEDAVG),
        privacy_mode=PrivacyMode.CENTRAL_DP,
        guarantee=PrivacyGuarantee(
            mode=PrivacyMode.CENTRAL_DP,
            epsilon=1.2,
            delta=1e-5,
            accountant="rdp",
            noise_multiplier=1.3,
            clipping_norm=0.5,
            rounds=2,
        ),
        participants=("c1", "c2"),
        round_metrics=((1, {"accuracy": 0.8}), (2, {"accuracy": 0.93})),
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    store = FakeRegistryStore()
    await store.register(version_of("acme", "job-1"))
    await store.register(version_of("acme", "job-2"))
    await store.register(version_of("acme", "job-3", name="mlp-iris"))
    await store.register(version_of("globex", "job-4"))
    app = build_app(store, presign=lambda ref: f"http://minio.test/fedbus/{ref.object_key}?sig=x")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://registry") as http:
        yield http


async def test_models_lists_a_tenants_names_with_their_latest_version(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/models", params={"tenant": "acme"})

    assert response.status_code == 200
    body = response.json()
    assert body["tenant"] == "acme"
    assert [(m["name"], m["latest_version"]) for m in body["models"]] == [
        ("cnn-mnist", 2),
        ("mlp-iris", 1),
    ]


async def test_versions_lists_every_version_oldest_first(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models/cnn-mnist/versions", params={"tenant": "acme"})

    assert response.status_code == 200
    versions = response.json()["versions"]
    assert [(v["version"], v["parent_version"], v["job_id"]) for v in versions] == [
        (1, None, "job-1"),
        (2, 1, "job-2"),
    ]


async def test_a_version_has_all_its_metadata_and_a_download_url(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/v1/models/cnn-mnist/versions/2", params={"tenant": "acme"})

    assert response.status_code == 200
    body = response.json()
    assert body["download_url"] == f"http://minio.test/fedbus/{REF.object_key}?sig=x"
    assert body["artifact"] == {"object_key": REF.object_key, "size_bytes": 7, "sha256": "d" * 64}
    assert body["privacy"] == {
        "mode": "central_dp", "epsilon": 1.2, "delta": 1e-5, "accountant": "rdp",
        "noise_multiplier": 1.3, "clipping_norm": 0.5, "rounds": 2,
    }  # fmt: skip
    assert body["strategy"] == {"name": "fedavg", "options": {}}
    assert body["participants"] == ["c1", "c2"]
    assert body["metrics"] == {"accuracy": 0.93}
    assert body["round_metrics"][1] == {"round": 2, "metrics": {"accuracy": 0.93}}
    assert (body["status"], body["rounds"], body["tenant"]) == ("completed", 2, "acme")
    assert body["created_at"]


async def test_a_jobs_model_is_found_by_job_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/jobs/job-3/model", params={"tenant": "acme"})

    assert response.status_code == 200
    assert (response.json()["name"], response.json()["version"]) == ("mlp-iris", 1)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/nope/versions",
        "/v1/models/cnn-mnist/versions/3",
        "/v1/models/nope/versions/1",
        "/v1/jobs/job-404/model",
    ],
)
async def test_unknown_names_versions_and_jobs_are_404_with_a_reason(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path, params={"tenant": "acme"})

    assert response.status_code == 404
    assert "acme" in response.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/mlp-iris/versions",
        "/v1/models/mlp-iris/versions/1",
        "/v1/jobs/job-1/model",
    ],
)
async def test_another_tenants_model_is_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, params={"tenant": "globex"})

    assert response.status_code == 404


async def test_the_tenant_is_required(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models")

    assert response.status_code == 422


async def test_checkpoints_list_each_rounds_global_model_when_enabled() -> None:
    store = FakeRegistryStore()
    spec = JobSpec(mode=JobMode.FEDERATED, model="cnn", dataset="mnist", rounds=2)
    await store.save_job(JobInfo("job-9", "acme", spec))
    await store.save_round("job-9", RoundRecord(2, ("c2",), {"loss": 0.3}, REF))
    await store.save_round("job-9", RoundRecord(1, ("c1",), {"loss": 0.7}, REF))
    presign = lambda ref: f"http://minio.test/{ref.object_key}"  # noqa: E731
    enabled = httpx.ASGITransport(app=build_app(store, presign=presign, checkpoints=True))
    disabled = httpx.ASGITransport(app=build_app(store, presign=presign))

    async with httpx.AsyncClient(transport=enabled, base_url="http://registry") as http:
        mine = await http.get("/v1/jobs/job-9/checkpoints", params={"tenant": "acme"})
        theirs = await http.get("/v1/jobs/job-9/checkpoints", params={"tenant": "globex"})
    async with httpx.AsyncClient(transport=disabled, base_url="http://registry") as http:
        off = await http.get("/v1/jobs/job-9/checkpoints", params={"tenant": "acme"})

    assert mine.status_code == 200
    checkpoints = mine.json()["checkpoints"]
    assert [(c["round"], c["metrics"]["loss"]) for c in checkpoints] == [(1, 0.7), (2, 0.3)]
    assert checkpoints[0]["download_url"] == f"http://minio.test/{REF.object_key}"
    assert theirs.status_code == 404
    assert off.status_code == 404
