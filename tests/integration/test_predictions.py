"""Predictions from a registered version, on the real stack: REST, the CLI, tenants, bad input.

A registry process registers an MNIST CNN the way a job ends (``job.accepted``,
``round.completed``, ``job.completed`` on Kafka, its weights encrypted in MinIO); a gateway
process, started without MinIO credentials or artifact keys, serves its predictions from the
registry's verified artifact route.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from dotenv import dotenv_values

from fedbus.bus import EventProducer, ensure_topics
from fedbus.events import (
    JobAccepted,
    JobCompleted,
    JobMode,
    JobSpec,
    JobStatus,
    ModelRegistered,
    RoundCompleted,
)
from fedbus.settings import FedbusSettings
from fedbus.storage import S3ArtifactStore
from fedbus_executor.dataset import DatasetSpec
from fedbus_executor.models import build_model

from .gateway_process import TOPICS as GATEWAY_TOPICS
from .gateway_process import _wait_ready
from .harness import EventWatcher, ServiceProcess, env_file, free_port, fresh_group, unique

REGISTRY_TOPICS = ["job.accepted", "round.completed", "job.completed", "budget.updated"]
_PORT = re.compile(r"ops server on [^:\s]+:(\d+)")
MNIST = DatasetSpec(name="mnist", feature_shape=(1, 28, 28), classes=tuple("0123456789"))
FEDBUS_CLI = str(Path(sys.executable).with_name("fedbus"))
SECRETS = ("FEDBUS_ARTIFACT_KEYS", "FEDBUS_ARTIFACT_KEYS_FILE", "FEDBUS_ARTIFACT_KEY_ID",
           "FEDBUS_MINIO_ACCESS_KEY", "FEDBUS_MINIO_SECRET_KEY")  # fmt: skip


@dataclass
class Stack:
    registry: ServiceProcess
    gateway: ServiceProcess
    gateway_url: str
    keys: dict[str, tuple[str, str]]  # who -> (API key, tenant)

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who][0]}"}


async def _registry_port(proc: ServiceProcess, limit_s: float = 60) -> int:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        found = _PORT.search(proc.text())
        if found:
            return int(found.group(1))
        assert proc.alive(), f"the registry exited:\n{proc.text()[-3000:]}"
        await asyncio.sleep(0.2)
    pytest.fail(f"the registry did not start within {limit_s}s:\n{proc.text()[-3000:]}")


def _env_without_storage_secrets(tmp_path: Path) -> dict[str, str]:
    """The gateway's environment: the stack's env file less MinIO keys and artifact keys."""
    kept = {k: v for k, v in dotenv_values(env_file()).items() if k not in SECRETS and v}
    path = tmp_path / "gateway.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in kept.items()))
    base = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return {**base, "FEDBUS_ENV_FILE": str(path)}


@asynccontextmanager
async def running_stack(
    settings: FedbusSettings, tmp_path: Path, *, gateway_env: Mapping[str, str] | None = None
) -> AsyncIterator[Stack]:
    """A registry and a gateway (keys of two tenants, every scope) on the real stack."""
    await ensure_topics(settings)
    group = unique("it-registry")
    await fresh_group(settings, group, REGISTRY_TOPICS)
    registry = ServiceProcess.start("model-registry", "fedbus_registry", log_dir=tmp_path,
                                    env={"FEDBUS_CONSUMER_GROUP": group})  # fmt: skip
    gateway: ServiceProcess | None = None
    try:
        registry_url = f"http://127.0.0.1:{await _registry_port(registry)}"
        gateway_group = unique("gateway-it")
        await fresh_group(settings, gateway_group, GATEWAY_TOPICS)
        keys = {who: (unique(f"key-{who}"), unique(f"tenant-{who}")) for who in ("a", "b")}
        scopes = ["models:read", "models:predict", "jobs:write", "jobs:read"]
        api_keys = [{"key": k, "tenant": t, "scopes": scopes} for k, t in keys.values()]
        port = free_port()
        gateway = ServiceProcess.start(
            "gateway", "fedbus_gateway", log_dir=tmp_path, principal="svc-gateway",
            base_env=_env_without_storage_secrets(tmp_path),
            env={"FEDBUS_CONSUMER_GROUP": gateway_group, "FEDBUS_HTTP_PORT": str(port),
                 "FEDBUS_GATEWAY_API_KEYS": json.dumps(api_keys),
                 "FEDBUS_GATEWAY_PREDICT_MAX_ROWS": "32", "FEDBUS_REGISTRY_URL": registry_url,
                 **(gateway_env or {})},
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        await _wait_ready(gateway, url)
        yield Stack(registry, gateway, url, keys)
    finally:
        if gateway is not None:
            gateway.stop()
        registry.stop()


@pytest.fixture
async def stack(settings: FedbusSettings, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(settings, tmp_path) as running:
        yield running


async def register_cnn(settings: FedbusSettings, tenant: str) -> tuple[str, torch.nn.Module]:
    """A one-round job of tenant ``tenant`` ending with a CNN for MNIST; its registered name."""
    torch.manual_seed(7)
    model = build_model("cnn", MNIST).eval()
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    job_id = str(uuid.uuid4())
    artifacts = S3ArtifactStore.from_settings(settings)
    ref = await artifacts.put_tensors(weights, prefix=f"jobs/{job_id}/round-1/global")
    spec = JobSpec(mode=JobMode.FEDERATED, model="cnn", dataset="mnist", rounds=1)
    async with (
        EventProducer(settings, client_id="it-predict") as producer,
        EventWatcher(settings, ["model.registered", "job.completed.dlq"]) as watch,
    ):
        await producer.publish(
            JobAccepted.create(
                source="it",
                job_id=job_id,
                tenant=tenant,
                request_event_id=str(uuid.uuid4()),
                spec=spec,
            )
        )
        await producer.publish(
            RoundCompleted.create(
                source="it",
                job_id=job_id,
                round=1,
                global_model=ref,
                participants=["c1", "c2"],
                total_samples=100,
                metrics={"accuracy": 0.5},
            )
        )
        await producer.publish(JobCompleted.create(
            source="it", job_id=job_id, status=JobStatus.COMPLETED, rounds_completed=1,
            final_model=ref, metrics={"accuracy": 0.5}))  # fmt: skip
        event = await watch.wait_for(lambda e: e.job_id == job_id, limit_s=90)
    assert isinstance(event, ModelRegistered), event
    return event.name, model


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FEDBUS_CLI, *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


async def test_predictions_through_rest_and_the_cli_for_the_owner_only(
    settings: FedbusSettings, stack: Stack, tmp_path: Path
) -> None:
    tenant_a = stack.keys["a"][1]
    name, model = await register_cnn(settings, tenant_a)
    rows = np.random.default_rng(3).random((5, 1, 28, 28), dtype=np.float32)
    with torch.inference_mode():
        expected = torch.softmax(model(torch.from_numpy(rows)), dim=1).numpy()
    url = f"/v1/models/{name}/versions/1:predict"

    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=60) as http:
        answer = await http.post(url, json={"inputs": rows.tolist()}, headers=stack.auth("a"))
        other = await http.post(url, json={"inputs": rows.tolist()}, headers=stack.auth("b"))
        shape = await http.post(url, json={"inputs": [[0.5] * 780]}, headers=stack.auth("a"))
        text = await http.post(url, json={"inputs": [["a"] * 784]}, headers=stack.auth("a"))
        many = await http.post(url, json={"inputs": [[0] * 784] * 33}, headers=stack.auth("a"))

    assert answer.status_code == 200, f"{answer.text}\n{stack.gateway.text()[-3000:]}"
    body = answer.json()
    np.testing.assert_allclose(np.array(body["probabilities"]), expected, rtol=1e-4, atol=1e-6)
    assert body["labels"] == [str(i) for i in expected.argmax(axis=1)]
    assert body["privacy"] == {"mode": "none", "epsilon": None, "delta": None}
    assert other.status_code == 404
    assert stack.keys["b"][1] in other.json()["detail"]
    assert shape.status_code == 422
    assert shape.json()["detail"] == (
        "inputs: expected rows of shape [1, 28, 28] (or 784 numbers each, flat), got rows of "
        "shape [780]"
    )
    assert text.status_code == 422
    assert "expected numbers, got text" in text.json()["detail"]
    assert many.status_code == 413
    assert "at most 32 rows per request" in many.json()["detail"]
    assert "loaded" in stack.gateway.text()

    npy = tmp_path / "rows.npy"
    np.save(npy, rows)
    cli_env = {**os.environ, "FEDBUS_GATEWAY_URL": stack.gateway_url,
               "FEDBUS_API_KEY": stack.keys["a"][0]}  # fmt: skip
    cli = await asyncio.to_thread(
        _cli, ["models", "predict", name, "1", "-i", str(npy), "--json", "--chunk", "2"], cli_env
    )
    assert cli.returncode == 0, cli.stderr
    printed = json.loads(cli.stdout)
    assert printed["labels"] == body["labels"]
    np.testing.assert_allclose(np.array(printed["probabilities"]), expected, rtol=1e-4, atol=1e-6)

    cli_b = await asyncio.to_thread(
        _cli, ["models", "predict", name, "1", "-i", str(npy)],
        {**cli_env, "FEDBUS_API_KEY": stack.keys["b"][0]},
    )  # fmt: skip
    assert cli_b.returncode == 2
    assert "HTTP 404" in cli_b.stderr
