"""``fedbus audit verify`` on a real job: the auditor replays the log and checks it.

A two-round local-DP job runs through every service and three trainers (processes, each its
own principal, as in test_privacy_jobs) and is registered. Then the auditor, with only its
env file from ``stack.py principal auditor`` (Kafka principal ``auditor`` with read-only ACLs,
read-only temporary MinIO credentials, the root public key, the artifact keys), runs
``fedbus audit verify --job J --reaggregate`` as a process: every check passes, round 2 is
recomputed bit for bit. After one trainer's update object is replaced in MinIO (re-encrypted
with the right key: an insider with write access), the same command fails and names the key.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
from botocore.exceptions import ClientError

from fedbus.settings import FedbusSettings
from fedbus.storage import S3ArtifactStore, tensors_to_bytes, update_key

from . import test_privacy_jobs
from .harness import REPO, env_file, state_dir
from .test_privacy_jobs import PrivateCluster, dp_spec, local_epsilon, run_job

pytestmark = pytest.mark.slow

cluster = test_privacy_jobs.cluster
"""The services, the accountant and three trainers: test_privacy_jobs' module-scoped fixture,
one cluster for this module."""


def auditor_env(settings: FedbusSettings) -> dict[str, str]:
    """``stack.py principal auditor``'s env file as a process's only ``FEDBUS_*`` setting."""
    port = settings.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)[1]
    minio = str(urlparse(settings.minio_endpoint).port)
    stack = {**os.environ, "FEDBUS_STATE_DIR": str(state_dir()), "FEDBUS_KAFKA_PORT": port,
             "FEDBUS_MINIO_PORT": minio, "FEDBUS_ENV_FILE": str(env_file())}  # fmt: skip
    subprocess.run(
        [sys.executable, str(REPO / "deploy" / "local" / "stack.py"), "principal", "auditor"],
        env=stack, check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    base = {k: v for k, v in os.environ.items() if not k.startswith("FEDBUS_")}
    return {**base, "FEDBUS_ENV_FILE": str(state_dir() / "principals" / "auditor.env")}


def audit(env: dict[str, str], job_id: str, report: Path) -> tuple[int, str, dict[str, Any]]:
    """Run the command as the auditor; its exit code, output and JSON report."""
    fedbus = Path(sys.executable).parent / "fedbus"
    out = subprocess.run(
        [str(fedbus), "audit", "verify", "--job", job_id, "--report", str(report),
         "--reaggregate"], env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return out.returncode, out.stdout + out.stderr, json.loads((report / "audit.json").read_text())


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


async def test_the_auditor_verifies_a_real_job_and_names_a_replaced_object(
    cluster: PrivateCluster, settings: FedbusSettings, tmp_path: Path
) -> None:
    z = 1.2
    target = local_epsilon(cluster, z=z, rounds=3)  # two rounds fit with room to spare
    job_id, end, _ = await run_job(
        cluster, dp_spec(cluster, mode="local_dp", target_epsilon=target, noise_multiplier=z,
                         clipping_norm=1.0, rounds=2),
    )  # fmt: skip
    assert end.rounds_completed == 2, cluster.logs()
    env = auditor_env(settings)

    code, output, report = await asyncio.to_thread(audit, env, job_id, tmp_path / "honest")

    assert code == 0, output
    checks = by_name(report)
    assert {n: c["verdict"] for n, c in checks.items()} == {
        "signatures": "pass", "histories": "pass", "privacy": "pass", "artifacts": "pass",
        "reaggregate": "pass", "notary": "not_applicable",
    }, output  # fmt: skip
    assert checks["privacy"]["checked"] == 1
    assert checks["reaggregate"]["checked"] == 1  # round 2, bit for bit
    assert checks["artifacts"]["checked"] >= 2 * 3 + 2  # six updates, two global models
    assert any("round 2's aggregate" in note for note in checks["artifacts"]["notes"])

    # The auditor's MinIO credentials read, and cannot write.
    auditor = FedbusSettings(_env_file=env["FEDBUS_ENV_FILE"])  # type: ignore[call-arg]
    readonly = S3ArtifactStore.from_settings(auditor)
    key = update_key(job_id, 1, f"{cluster.dataset}-c0")
    with pytest.raises(ClientError):
        readonly._s3.put_object(Bucket=readonly.bucket, Key=key, Body=b"x")

    # An insider with write access and the artifact keys replaces one update.
    store = S3ArtifactStore.from_settings(settings)
    await store.put_at(tensors_to_bytes({"w": np.zeros(3, dtype=np.float32)}), key=key)

    code, output, report = await asyncio.to_thread(audit, env, job_id, tmp_path / "tampered")

    assert code == 1, output
    checks = by_name(report)
    assert checks["artifacts"]["verdict"] == "fail"
    assert [f["where"] for f in checks["artifacts"]["findings"]] == [key]
    assert key in output
    assert checks["reaggregate"]["verdict"] == "pass"  # round 1 is not recomputed (torch)
