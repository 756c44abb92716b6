"""A plugin model trains a federated job on the real stack: the example package's SampleConvNet.

``examples/plugins`` (``fedbus-example-models``) is installed in the workspace, so trainers
and the aggregator resolve ``sample-convnet`` through the entry-point group
``fedbus.models``; orchestration (which does not import torch) knows it from the trainers'
heartbeats, and what the aggregator builds from ``FEDBUS_MODEL_CATALOG`` (the output of
``fedbus models available --json``), and checks a job's ``model_options`` against their
schemas. The job is submitted once through the gateway and once
as a raw ``job.requested`` on Kafka, each with SGD with Nesterov momentum and a cosine
schedule; both complete, with a SampleConvNet global model and a held-out accuracy above
chance on MNIST-5k. A job giving sample-convnet an option it does not have is rejected at
admission, naming the option.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from fedbus.bus import EventProducer
from fedbus.events import (
    JobCompleted,
    JobFailed,
    JobRejected,
    JobRequested,
    JobSpec,
    RoundAssigned,
    RoundStarted,
)
from fedbus.settings import FedbusSettings
from fedbus.storage import S3ArtifactStore
from fedbus_cli.commands import available
from fedbus_executor import PrepareOptions, prepare_dataset

from .gateway_process import running_gateway
from .harness import (
    EventWatcher,
    ServiceProcess,
    logs_of,
    start_coordination,
    trainer_env,
    unique,
    wait_for_trainers,
)

pytestmark = pytest.mark.slow

ROUNDS = 2
SHAPES = {
    "conv1.weight": (16, 1, 8, 8),
    "conv2.weight": (32, 16, 4, 4),
    "fc1.weight": (32, 512),
    "fc2.weight": (10, 32),
}


def _spec(dataset: str, seed: int) -> dict[str, object]:
    return {
        "mode": "federated", "model": "sample-convnet", "model_options": {},
        "dataset": dataset, "rounds": ROUNDS, "clients_per_round": 2, "min_clients": 2,
        "round_deadline_seconds": 240,
        "training": {"local_epochs": 1, "batch_size": 64, "learning_rate": 0.05,
                     "optimizer": "sgd", "momentum": 0.9, "nesterov": True,
                     "lr_schedule": "cosine"},
        "strategy": {"name": "fedavg"}, "privacy": {"mode": "none"}, "seed": seed,
    }  # fmt: skip


async def test_the_example_plugins_sample_convnet_trains_through_gateway_and_kafka(
    settings: FedbusSettings, tmp_path: Path
) -> None:
    clients = [unique(f"convnet-{c}") for c in "ab"]
    dataset = unique("mnist")  # the name trainers announce; the files are MNIST-5k's
    folder = await asyncio.to_thread(
        lambda: prepare_dataset("mnist", tmp_path / "data", PrepareOptions(num_clients=2)).root
    )

    catalog = tmp_path / "models.json"
    catalog.write_text(json.dumps(available.catalog()))
    procs = await start_coordination(
        settings, tmp_path, "plugin", f"{dataset}={folder / 'test.parquet'}",
        orchestration_env={"FEDBUS_MODEL_CATALOG": str(catalog)},
    )  # fmt: skip
    for i, client in enumerate(clients):
        part = folder / "clients" / f"client-{i:03d}.parquet"
        procs.append(
            ServiceProcess.start(
                client, "fedbus_trainer", log_dir=tmp_path,
                args=["--client-id", client, "--data", f"{dataset}={part}", "--device", "cpu"],
                base_env=trainer_env(settings, client),
                env={"FEDBUS_HEARTBEAT_SECONDS": "1", "OMP_NUM_THREADS": "2",
                     "FEDBUS_STATE_DIR": str(tmp_path / "state")},
            )
        )  # fmt: skip

    def logs() -> str:
        return logs_of(procs)

    watched = ["trainer.heartbeat", "round.started", "job.completed", "job.failed"]
    watched += ["job.rejected"]
    watched += [f"round.assigned.{c}" for c in clients]
    ends: dict[str, JobCompleted | JobFailed] = {}
    try:
        async with EventWatcher(settings, watched) as watch:
            await wait_for_trainers(watch, procs, clients, limit_s=180)

            async with (
                running_gateway(settings, tmp_path) as gw,
                httpx.AsyncClient(timeout=30) as http,
            ):
                reply = await http.post(
                    f"{gw.url}/v1/jobs", json={"spec": _spec(dataset, 5)}, headers=gw.auth("a")
                )
                assert reply.status_code == 202, reply.text
                via_gateway = reply.json()["job_id"]
                ends[via_gateway] = await watch.wait_for(
                    lambda e: e.job_id == via_gateway and isinstance(e, JobCompleted | JobFailed),
                    limit_s=480,
                )  # type: ignore[assignment]

            raw = JobRequested.create(
                source="it-raw-producer", job_id=unique("job-convnet"), tenant="a",
                spec=JobSpec.model_validate(_spec(dataset, 6)),
            )  # fmt: skip
            async with EventProducer(settings, client_id=unique("raw-producer")) as producer:
                await producer.publish(raw)
            ends[raw.job_id] = await watch.wait_for(
                lambda e: e.job_id == raw.job_id and isinstance(e, JobCompleted | JobFailed),
                limit_s=480,
            )  # type: ignore[assignment]
            bad = JobRequested.create(
                source="it-raw-producer", job_id=unique("job-convnet-bad"), tenant="a",
                spec=JobSpec.model_validate({**_spec(dataset, 7), "model_options": {"width": 3}}),
            )  # fmt: skip
            async with EventProducer(settings, client_id=unique("raw-producer")) as producer:
                await producer.publish(bad)
            rejected = await watch.wait_for(lambda e: e.job_id == bad.job_id, limit_s=60)
            seen = list(watch.seen)
    finally:
        for proc in procs:
            proc.stop()

    assert isinstance(rejected, JobRejected), rejected
    [reason] = rejected.reasons
    assert (reason.code, reason.field) == ("invalid_model_option", "spec.model_options.width")
    assert "model 'sample-convnet' has no option 'width'" in reason.message
    store = S3ArtifactStore.from_settings(settings)
    for job_id, end in ends.items():
        assert isinstance(end, JobCompleted), f"{end}\n{logs()}"
        assert end.rounds_completed == ROUNDS
        assert end.final_model is not None
        assert end.metrics["accuracy"] > 0.5, end.metrics  # ten classes: chance is 0.1
        print(f"{job_id}: {end.metrics}")  # the figures, with -s
        weights = await store.get_tensors(end.final_model)
        assert {k: tuple(weights[k].shape) for k in SHAPES} == SHAPES
        started = [e for e in seen if isinstance(e, RoundStarted) and e.job_id == job_id]
        assigned = [e for e in seen if isinstance(e, RoundAssigned) and e.job_id == job_id]
        assert {e.model for e in started} == {"sample-convnet"}
        assert assigned
        assert all(a.training.nesterov and a.training.momentum == 0.9 for a in assigned)
        assert {a.training.lr_schedule.value for a in assigned} == {"cosine"}
