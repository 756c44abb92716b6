"""docs/walkthrough.md runs: a user's CSV and model to a registered, queryable model.

Every block of the page runs in order, in a folder of its own, on the real stack: the import
command, ``fedbus models available``, the three ``fedbus-trainer`` lines (each a trainer
process with its own principal, started in that folder with the line's arguments), the job
file submitted with the page's ``fedbus jobs submit ... --watch`` through a gateway, the
registered version listed, and the page's ``fedbus models predict`` on its CSV. Orchestration,
the aggregator (evaluating on the import's test file) and the model registry run as their own
processes. Dataset and hospital names are made unique per run (the page's ``patients`` and
``hospital-a`` are replaced everywhere), so the test can run again on the same stack.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from fedbus.events import JobCompleted, ModelRegistered, UpdateSubmitted
from fedbus.settings import FedbusSettings

from .harness import (
    REPO,
    EventWatcher,
    ServiceProcess,
    logs_of,
    patients_csv,
    start_coordination,
    trainer_env,
    unique,
    wait_for_trainers,
)
from .test_predictions import Stack, running_stack

pytestmark = pytest.mark.slow

PAGE = REPO / "docs" / "walkthrough.md"
BLOCK = re.compile(r"<!-- walk: ([\w-]+) -->\n```(\w+)\n(.*?)```", re.S)
BIN = Path(sys.executable).parent


def _blocks(replace: dict[str, str]) -> dict[str, str]:
    text = PAGE.read_text(encoding="utf-8")
    for old, new in replace.items():
        text = text.replace(old, new)
    return {name: body for name, _, body in BLOCK.findall(text)}


def test_every_code_block_of_the_page_runs() -> None:
    text = PAGE.read_text(encoding="utf-8")

    assert len(re.findall(r"^```\w+$", text, re.M)) == len(BLOCK.findall(text))
    assert list(_blocks({})) == [
        "import", "available", "trainers", "job", "submit", "versions", "gateway", "input",
        "predict",
    ]  # fmt: skip


def _run(block: str, cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    """Run a bash block as the page shows it; its output (fails with it on a non-zero exit)."""
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{block}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    return done.stdout


def _exported(block: str) -> dict[str, str]:
    """The variables a block of ``export NAME='value'`` lines sets."""
    out = {}
    for line in block.strip().splitlines():
        name, _, value = shlex.split(line.removeprefix("export "))[0].partition("=")
        out[name] = value
    return out


async def test_the_walkthrough_from_a_csv_to_predictions(
    settings: FedbusSettings, tmp_path: Path
) -> None:
    dataset = unique("patients")
    hospitals = {f"hospital-{c}": unique(f"hospital-{c}") for c in "abc"}
    blocks = _blocks({"patients": dataset, **hospitals})
    async with running_stack(settings, tmp_path, gateway_env=_exported(blocks["gateway"])) as stack:
        await _walk(settings, stack, tmp_path, dataset, hospitals, blocks)


async def _walk(
    settings: FedbusSettings,
    stack: Stack,
    tmp_path: Path,
    dataset: str,
    hospitals: dict[str, str],
    blocks: dict[str, str],
) -> None:
    walk = tmp_path / "walk"
    walk.mkdir()
    patients_csv(walk / f"{dataset}.csv", list(hospitals.values()), per_hospital=150, seed=5)
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "FEDBUS_GATEWAY_URL": stack.gateway_url,
        "FEDBUS_API_KEY": stack.keys["a"][0],
    }

    # 1. the import, 2. the model
    imported = await asyncio.to_thread(_run, blocks["import"], walk, env)
    assert f"dataset {dataset} written to data/{dataset}" in imported
    available = await asyncio.to_thread(_run, blocks["available"], walk, env)
    assert "tabular-mlp" in available

    # 3. the trainers, as the page's lines start them; orchestration and the aggregator
    procs = await start_coordination(
        settings, tmp_path, "walk", f"{dataset}=data/{dataset}/test.parquet", cwd=walk
    )
    for line in blocks["trainers"].strip().splitlines():
        command, *args = shlex.split(line)
        assert command == "fedbus-trainer", line
        client_id = args[args.index("--client-id") + 1]
        procs.append(
            ServiceProcess.start(
                client_id, "fedbus_trainer", log_dir=tmp_path, cwd=walk,
                args=[*args, "--device", "cpu"], base_env=trainer_env(settings, client_id),
                env={"FEDBUS_HEARTBEAT_SECONDS": "1", "OMP_NUM_THREADS": "1",
                     "FEDBUS_STATE_DIR": str(tmp_path / "state")},
            )
        )  # fmt: skip

    def logs() -> str:
        return logs_of(procs)

    try:
        topics = ["trainer.heartbeat", "update.submitted", "job.completed", "model.registered"]
        async with EventWatcher(settings, topics) as watch:
            beats = await wait_for_trainers(watch, procs, hospitals.values())
            live = {  # client id -> the rows it announces
                c: d.num_samples for c, b in beats.items() for d in b.datasets if d.name == dataset
            }

            # 4. the job, submitted and followed as the page does
            (walk / f"{dataset}-job.yaml").write_text(blocks["job"])
            submitted = await asyncio.to_thread(_run, blocks["submit"], walk, env, 480)
            end = await watch.wait_for(
                lambda e: isinstance(e, JobCompleted) and e.job_id in submitted, limit_s=60
            )
            registered = await watch.wait_for(
                lambda e: isinstance(e, ModelRegistered) and e.job_id == end.job_id, limit_s=90
            )
            rounds = yaml.safe_load(blocks["job"])["rounds"]

            def trained() -> dict[tuple[str, int], int]:
                return {(u.client_id, u.round): u.num_samples for u in watch.seen
                        if isinstance(u, UpdateSubmitted) and u.job_id == end.job_id}  # fmt: skip

            deadline = time.monotonic() + 60  # the watcher reads what came while the CLI waited
            while len(trained()) < len(hospitals) * rounds and time.monotonic() < deadline:
                await watch.poll()
    finally:
        for proc in procs:
            proc.stop()
    assert isinstance(end, JobCompleted)
    assert end.job_id in submitted, submitted
    assert isinstance(registered, ModelRegistered)
    assert registered.name == f"tabular-mlp-{dataset}"
    assert registered.version == 1
    assert end.metrics["accuracy"] > 0.7, end.metrics  # held-out test.parquet; chance ~0.5
    # Each hospital's trainer announced its own file's rows and trained on them every round.
    manifest = json.loads((walk / "data" / dataset / "manifest.json").read_text())
    rows = {h: manifest["files"][f"clients/{h}.parquet"]["rows"] for h in hospitals.values()}
    assert live == rows
    assert trained() == {(h, r): rows[h] for h in hospitals.values() for r in range(1, rounds + 1)}

    # 5. the registered version, 6. predictions
    versions = await asyncio.to_thread(_run, blocks["versions"], walk, env)
    assert f"tabular-mlp-{dataset}" in versions or "1" in versions.split()
    (walk / f"new-{dataset}.csv").write_text(blocks["input"])
    predicted = await asyncio.to_thread(_run, blocks["predict"], walk, env)
    answers = [line.split() for line in predicted.splitlines() if re.match(r"\s*\d+\s", line)]
    assert [a[1] for a in answers] == ["diabetic", "healthy"], predicted
    assert "privacy: none" in predicted

    url = f"/v1/models/tabular-mlp-{dataset}/versions/1:predict"
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=60) as http:
        other = await http.post(url, json={"inputs": [[72, 31.0, 176]]}, headers=stack.auth("b"))
        short = await http.post(url, json={"inputs": [[72, 31.0]]}, headers=stack.auth("a"))
    assert other.status_code == 404
    assert short.status_code == 422
    assert "3" in short.json()["detail"], short.json()
