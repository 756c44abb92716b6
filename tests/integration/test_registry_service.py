"""The model registry as a real process against Kafka, MinIO and PostgreSQL.

Job events go straight to Kafka; the registry answers with ``model.registered`` and serves
the versions, with a presigned download of the real artifact, over HTTP.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from fedbus.bus import EventProducer, ensure_topics
from fedbus.events import (
    DeadLetter,
    JobAccepted,
    JobCompleted,
    JobMode,
    JobSpec,
    JobStatus,
    ModelRef,
    ModelRegistered,
    RoundCompleted,
)
from fedbus.settings import FedbusSettings
from fedbus.storage import S3ArtifactStore

from .harness import EventWatcher, ServiceProcess, fresh_group, unique

TOPICS = ["job.accepted", "round.completed", "job.completed", "budget.updated"]
_PORT = re.compile(r"ops server on [^:\s]+:(\d+)")


@pytest.fixture
async def registry(
    settings: FedbusSettings, tmp_path: Path
) -> AsyncIterator[tuple[ServiceProcess, str]]:
    """The registry process (its own consumer group, moved to the end) and its base URL."""
    group = unique("it-registry")
    await ensure_topics(settings)
    await fresh_group(settings, group, TOPICS)
    proc = ServiceProcess.start(
        "model-registry", "fedbus_registry", log_dir=tmp_path, env={"FEDBUS_CONSUMER_GROUP": group}
    )
    try:
        yield proc, f"http://127.0.0.1:{await _wait_for_port(proc)}"
    finally:
        proc.stop()


async def _wait_for_port(proc: ServiceProcess, limit_s: float = 60) -> int:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        found = _PORT.search(proc.text())
        if found:
            return int(found.group(1))
        if not proc.alive():
            pytest.fail(f"the registry exited:\n{proc.text()[-3000:]}")
        await asyncio.sleep(0.2)
    pytest.fail(f"the registry did not start within {limit_s}s:\n{proc.text()[-3000:]}")


@pytest.fixture
async def producer(settings: FedbusSettings) -> AsyncIterator[EventProducer]:
    async with EventProducer(settings, client_id="it-registry") as p:
        yield p


async def publish_job(
    producer: EventProducer, artifacts: S3ArtifactStore, *, tenant: str, dataset: str
) -> tuple[str, ModelRef]:
    """accepted -> round 1 -> completed for a new job; returns its id and final model."""
    job_id = str(uuid.uuid4())
    weights = {"conv.weight": np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)}
    model = await artifacts.put_tensors(weights, prefix=f"jobs/{job_id}/round-1/global")
    spec = JobSpec(mode=JobMode.FEDERATED, model="cnn", dataset=dataset, rounds=1)
    await producer.publish(
        JobAccepted.create(
            source="it", job_id=job_id, tenant=tenant, request_event_id=str(uuid.uuid4()), spec=spec
        )
    )
    await producer.publish(
        RoundCompleted.create(
            source="it",
            job_id=job_id,
            round=1,
            global_model=model,
            participants=["client-a", "client-b"],
            total_samples=200,
            metrics={"accuracy": 0.75, "loss": 0.6},
        )
    )
    await producer.publish(
        JobCompleted.create(
            source="it",
            job_id=job_id,
            status=JobStatus.COMPLETED,
            rounds_completed=1,
            final_model=model,
            metrics={"accuracy": 0.75},
        )
    )
    return job_id, model


async def test_jobs_become_versions_readable_and_downloadable_over_http(
    settings: FedbusSettings,
    registry: tuple[ServiceProcess, str],
    producer: EventProducer,
) -> None:
    proc, base_url = registry
    artifacts = S3ArtifactStore.from_settings(settings)
    tenant, dataset = unique("tenant"), unique("ds")
    name = f"cnn-{dataset}"

    async with EventWatcher(settings, ["model.registered", "job.completed.dlq"]) as watch:
        first_job, first_model = await publish_job(
            producer, artifacts, tenant=tenant, dataset=dataset
        )
        first = await watch.wait_for(lambda e: e.job_id == first_job, limit_s=60)
        second_job, _ = await publish_job(producer, artifacts, tenant=tenant, dataset=dataset)
        second = await watch.wait_for(
            lambda e: e.job_id == second_job and isinstance(e, ModelRegistered), limit_s=60
        )

    assert isinstance(first, ModelRegistered), proc.text()[-3000:]
    assert (first.name, first.version, first.artifact) == (name, 1, first_model)
    assert isinstance(second, ModelRegistered)
    assert second.version == 2

    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        models = (await http.get("/v1/models", params={"tenant": tenant})).json()["models"]
        detail = await http.get(f"/v1/models/{name}/versions/2", params={"tenant": tenant})
        by_job = await http.get(f"/v1/jobs/{first_job}/model", params={"tenant": tenant})
        other = await http.get(f"/v1/models/{name}/versions/1", params={"tenant": "intruder"})
        body = detail.json()
        async with httpx.AsyncClient(verify=settings.minio_ssl_context(), timeout=10) as minio:
            download = await minio.get(body["download_url"])

    assert [(m["name"], m["latest_version"]) for m in models] == [(name, 2)]
    assert detail.status_code == 200
    assert (body["parent_version"], body["job_id"]) == (1, second_job)
    assert body["participants"] == ["client-a", "client-b"]
    assert body["metrics"] == {"accuracy": 0.75}
    assert by_job.json()["version"] == 1
    assert other.status_code == 404
    assert download.status_code == 200
    # The link serves the object as stored (ciphertext when the stack has artifact keys).
    plain = artifacts.open_stored(download.content, ModelRef.model_validate(body["artifact"]))
    assert hashlib.sha256(plain).hexdigest() == body["artifact"]["sha256"]


async def test_a_final_model_with_a_wrong_hash_is_dead_lettered_and_the_service_goes_on(
    settings: FedbusSettings,
    registry: tuple[ServiceProcess, str],
    producer: EventProducer,
) -> None:
    proc, base_url = registry
    artifacts = S3ArtifactStore.from_settings(settings)
    tenant = unique("tenant")
    job_id = str(uuid.uuid4())
    real = await artifacts.put_bytes(b"not the weights you want", prefix=f"jobs/{job_id}")
    forged = ModelRef(object_key=real.object_key, size_bytes=real.size_bytes, sha256="0" * 64)
    spec = JobSpec(mode=JobMode.FEDERATED, model="cnn", dataset=unique("ds"), rounds=1)

    async with EventWatcher(settings, ["model.registered", "job.completed.dlq"]) as watch:
        await producer.publish(
            JobAccepted.create(
                source="it", job_id=job_id, tenant=tenant, request_event_id="r", spec=spec
            )
        )
        await producer.publish(
            JobCompleted.create(
                source="it",
                job_id=job_id,
                status=JobStatus.COMPLETED,
                rounds_completed=0,
                final_model=forged,
            )
        )
        letter = await watch.wait_for(lambda e: e.job_id == job_id, limit_s=60)
        good_job, _ = await publish_job(producer, artifacts, tenant=tenant, dataset="after-dlq")
        after = await watch.wait_for(lambda e: e.job_id == good_job, limit_s=60)

    assert isinstance(letter, DeadLetter), proc.text()[-3000:]
    assert letter.original_topic == "job.completed"
    assert "SHA-256" in letter.error_message
    assert job_id in letter.error_message
    assert isinstance(after, ModelRegistered)
    assert proc.alive()
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        missing = await http.get(f"/v1/jobs/{job_id}/model", params={"tenant": tenant})
    assert missing.status_code == 404
