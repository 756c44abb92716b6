"""``GET .../versions/{v}/artifact``: the verified plaintext the gateway predicts with."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import AsyncIterator
from urllib.parse import unquote

import httpx
import numpy as np
import pytest

from fedbus.events import JobMode, JobSpec, JobStatus, PrivacyMode, Strategy, StrategySpec
from fedbus.storage import AesGcmCipher, InMemoryArtifactStore, tensors_from_bytes
from fedbus_registry.api import build_app
from fedbus_registry.versions import JobInfo, NewVersion

from .fakes import FakeRegistryStore

WEIGHTS = {"head.weight": np.arange(12, dtype=np.float32).reshape(3, 4)}


@dataclasses.dataclass
class Setup:
    http: httpx.AsyncClient
    artifacts: InMemoryArtifactStore
    object_key: str


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    store = FakeRegistryStore()
    artifacts = InMemoryArtifactStore(AesGcmCipher(os.urandom(32), key_id="k1"))
    ref = await artifacts.put_tensors(WEIGHTS, prefix="jobs/job-1/round-1/global")
    spec = JobSpec(
        mode=JobMode.FEDERATED, model="cnn", dataset="mnist", rounds=1,
        model_options={"channels": 16, "hidden": 64},
    )  # fmt: skip
    await store.save_job(JobInfo(job_id="job-1", tenant="acme", spec=spec))
    await store.register(
        NewVersion(
            tenant="acme", name="cnn-mnist", job_id="job-1", status=JobStatus.COMPLETED,
            rounds=1, metrics={}, artifact=ref, strategy=StrategySpec(name=Strategy.FEDAVG),
            privacy_mode=PrivacyMode.NONE, guarantee=None, participants=("c1",),
        )
    )  # fmt: skip
    app = build_app(store, presign=lambda r: "http://x", read_artifact=artifacts.get_bytes)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://registry"
    ) as http:
        yield Setup(http, artifacts, ref.object_key)


async def test_the_artifact_is_served_decrypted_and_checked_with_the_jobs_model_and_dataset(
    setup: Setup,
) -> None:
    response = await setup.http.get(
        "/v1/models/cnn-mnist/versions/1/artifact", params={"tenant": "acme"}
    )

    assert response.status_code == 200
    assert response.headers["x-fedbus-model"] == "cnn"
    assert response.headers["x-fedbus-dataset"] == "mnist"
    options = json.loads(unquote(response.headers["x-fedbus-model-options"]))
    assert options == {"channels": 16, "hidden": 64}
    assert response.headers["x-fedbus-sha256"] == hashlib.sha256(response.content).hexdigest()
    stored = setup.artifacts.objects[setup.object_key]
    assert stored[:4] == b"FBE2"  # encrypted at rest, plaintext on this route
    np.testing.assert_array_equal(tensors_from_bytes(response.content)["head.weight"],
                                  WEIGHTS["head.weight"])  # fmt: skip


async def test_another_tenant_gets_404(setup: Setup) -> None:
    response = await setup.http.get(
        "/v1/models/cnn-mnist/versions/1/artifact", params={"tenant": "globex"}
    )

    assert response.status_code == 404
    assert "globex" in response.json()["detail"]


async def test_a_tampered_artifact_is_a_500_and_no_bytes(setup: Setup) -> None:
    body = bytearray(setup.artifacts.objects[setup.object_key])
    body[-1] ^= 1
    setup.artifacts.objects[setup.object_key] = bytes(body)

    response = await setup.http.get(
        "/v1/models/cnn-mnist/versions/1/artifact", params={"tenant": "acme"}
    )

    assert response.status_code == 500
    assert "unreadable" in response.json()["detail"]


async def test_without_a_reader_there_is_no_artifact_route() -> None:
    app = build_app(FakeRegistryStore(), presign=lambda r: "http://x")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as h:
        response = await h.get("/v1/models/cnn-mnist/versions/1/artifact", params={"tenant": "a"})

    assert response.status_code == 404
