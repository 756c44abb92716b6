"""A user's own CSV, imported by hospital, trains a federated job on the real stack.

What a new user does (docs/data.md): ``fedbus data import patients.csv --label outcome
--partition-by hospital``, then start one trainer per hospital with ``--data
patients=<dataset folder>`` (each reads ``clients/<its client id>.parquet``, named after its
hospital) and an aggregator evaluating on the folder's ``test.parquet``, and submit a job for
that dataset through the gateway. Every hospital's trainer trains every round, on its own
rows only (its announced size is its file's), and the job completes with a test accuracy
above chance.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from fedbus.datalayout import client_file
from fedbus.events import JobCompleted, JobFailed, TrainerHeartbeat, UpdateSubmitted
from fedbus.settings import FedbusSettings

from .gateway_process import running_gateway
from .harness import (
    EventWatcher,
    ServiceProcess,
    import_csv,
    patients_csv,
    start_coordination,
    trainer_env,
    unique,
)

pytestmark = pytest.mark.slow

ROUNDS = 2


async def test_an_imported_csv_trains_a_federated_job_one_trainer_per_hospital(
    settings: FedbusSettings, tmp_path: Path
) -> None:
    hospitals = [unique(f"hospital-{c}") for c in "abc"]
    dataset = unique("patients")
    patients_csv(tmp_path / "patients.csv", hospitals, per_hospital=120, seed=11, units=False)
    folder = await import_csv(
        tmp_path / "patients.csv", tmp_path / "data", dataset, partition_by="hospital"
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["clients"] == sorted(hospitals)
    rows = {h: manifest["files"][f"clients/{h}.parquet"]["rows"] for h in hospitals}
    assert all(client_file(folder, h).is_file() for h in hospitals)

    procs = await start_coordination(
        settings, tmp_path, "import", f"{dataset}={folder / 'test.parquet'}"
    )
    for hospital in hospitals:  # the dataset folder: each reads its own clients/<id>.parquet
        procs.append(
            ServiceProcess.start(
                hospital,
                "fedbus_trainer",
                log_dir=tmp_path,
                args=["--client-id", hospital, "--data", f"{dataset}={folder}", "--device", "cpu"],
                base_env=trainer_env(settings, hospital),
                env={
                    "FEDBUS_HEARTBEAT_SECONDS": "1",
                    "OMP_NUM_THREADS": "1",
                    "FEDBUS_STATE_DIR": str(tmp_path / "state"),
                },
            )
        )

    def logs() -> str:
        return "\n".join(f"--- {p.name}\n{p.text()[-3000:]}" for p in procs)

    try:
        async with EventWatcher(
            settings, ["trainer.heartbeat", "update.submitted", "job.completed", "job.failed"]
        ) as watch:
            deadline = time.monotonic() + 180
            announced: dict[str, int] = {}
            while set(announced) != set(hospitals) and time.monotonic() < deadline:
                for e in watch.seen:
                    if isinstance(e, TrainerHeartbeat) and e.client_id in hospitals:
                        announced[e.client_id] = next(
                            d.num_samples for d in e.datasets if d.name == dataset
                        )
                if dead := [p.name for p in procs if not p.alive()]:
                    pytest.fail(f"{dead} exited during start:\n{logs()}")
                await watch.poll()
            assert announced == rows, logs()  # each announces its own file's rows

            async with (
                running_gateway(settings, tmp_path) as gw,
                httpx.AsyncClient(timeout=30) as http,
            ):
                spec = {
                    "mode": "federated", "model": "mlp", "dataset": dataset, "rounds": ROUNDS,
                    "clients_per_round": 3, "min_clients": 3, "round_deadline_seconds": 240,
                    "training": {"local_epochs": 3, "batch_size": 16, "learning_rate": 0.2},
                    "strategy": {"name": "fedavg"}, "privacy": {"mode": "none"}, "seed": 5,
                }  # fmt: skip
                reply = await http.post(
                    f"{gw.url}/v1/jobs", json={"spec": spec}, headers=gw.auth("a")
                )
                assert reply.status_code == 202, reply.text
                job_id = reply.json()["job_id"]
                end = await watch.wait_for(
                    lambda e: e.job_id == job_id and isinstance(e, JobCompleted | JobFailed),
                    limit_s=420,
                )
    finally:
        for proc in procs:
            proc.stop()

    assert isinstance(end, JobCompleted), f"{end}\n{logs()}"
    assert end.rounds_completed == ROUNDS
    updates = [e for e in watch.seen if isinstance(e, UpdateSubmitted) and e.job_id == job_id]
    trained = {(u.client_id, u.round): u.num_samples for u in updates}
    assert trained == {(h, r): rows[h] for h in hospitals for r in range(1, ROUNDS + 1)}
    assert end.metrics["accuracy"] > 0.6, end.metrics  # the held-out test.parquet; chance ~0.5
