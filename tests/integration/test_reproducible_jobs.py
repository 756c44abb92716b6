"""Reproducible jobs: the same job (same seed, no DP) run twice gives the same model bytes.

Real processes on the real stack: model-registry, orchestration, the aggregator and three
trainers on digits. The job is submitted twice, as a user re-running it would (a new job
id each time); every round's global model and the registered model must have the same
SHA-256 in both runs, with the same clients selected. Each round selects two of the three
trainers, so selection is exercised too; the trainers' updates arrive in whatever order
they finish, which the aggregator's fixed-point sum makes irrelevant.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fedbus.bus import EventProducer, ensure_topics
from fedbus.events import (
    Event,
    JobCompleted,
    JobFailed,
    JobRejected,
    JobRequested,
    JobSpec,
    RoundCompleted,
    RoundStarted,
    TrainerHeartbeat,
    load_topics,
)
from fedbus.settings import FedbusSettings
from fedbus_executor import PrepareOptions, prepare_dataset

from .harness import EventWatcher, ServiceProcess, free_port, fresh_group, unique

pytestmark = pytest.mark.slow

TENANT = "tenant-repro"
TRAINERS = 3


@dataclass
class Stack:
    settings: FedbusSettings
    dataset: str
    registry: str
    procs: list[ServiceProcess]

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.text()[-3000:]}" for p in self.procs)


@dataclass(frozen=True)
class Run:
    """What one run of the job produced, as a user and an auditor can read it."""

    selected: dict[int, list[str]]
    round_models: dict[int, str]
    registered: str
    final: str


async def _groups(settings: FedbusSettings, names: list[str]) -> dict[str, str]:
    await ensure_topics(settings)
    topics = [t.name for t in load_topics().event_topics()]
    groups = {name: unique(f"repro-{name}") for name in names}
    await asyncio.gather(*(fresh_group(settings, g, topics) for g in groups.values()))
    return groups


def _commands(dataset: str, data: Path) -> dict[str, tuple[str, list[str]]]:
    commands = {
        "model-registry": ("fedbus_registry", []),
        "orchestration": ("fedbus_orchestration", []),
        "aggregator": ("fedbus_aggregator", ["--eval-data", f"{dataset}={data / 'test.parquet'}"]),
    }
    for i in range(TRAINERS):
        part = data / "clients" / f"client-{i:03d}.parquet"
        args = ["--client-id", f"{dataset}-c{i}", "--data", f"{dataset}={part}", "--device", "cpu"]
        commands[f"trainer-{i}"] = ("fedbus_trainer", args)
    return commands


async def _heartbeats(settings: FedbusSettings, clients: set[str]) -> None:
    async with EventWatcher(settings, ["trainer.heartbeat"]) as watch:
        for client in clients:

            def beat(e: Event, c: str = client) -> bool:
                return isinstance(e, TrainerHeartbeat) and e.client_id == c

            await watch.wait_for(beat, limit_s=180)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, settings: FedbusSettings) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("repro")
    data = prepare_dataset("digits", root / "data", PrepareOptions(num_clients=3, seed=0)).root
    dataset, port = unique("digits"), free_port()
    commands = _commands(dataset, data)
    groups = asyncio.run(_groups(settings, list(commands)))
    common = {"FEDBUS_HEARTBEAT_SECONDS": "1", "FEDBUS_STATE_DIR": str(root / "state")}
    # Same intra-op thread count in every run: PyTorch's CPU sums are split by thread.
    env = {"OMP_NUM_THREADS": "1", **common}
    procs = []
    try:
        for name, (module, args) in commands.items():
            extra = {"FEDBUS_HTTP_PORT": str(port)} if name == "model-registry" else {}
            procs.append(
                ServiceProcess.start(
                    name,
                    module,
                    log_dir=root,
                    args=args,
                    env={**env, **extra, "FEDBUS_CONSUMER_GROUP": groups[name]},
                )
            )
        stack = Stack(settings, dataset, f"http://127.0.0.1:{port}", procs)
        _wait_ready(f"{stack.registry}/readyz", stack)
        clients = {f"{dataset}-c{i}" for i in range(TRAINERS)}
        asyncio.run(_heartbeats(settings, clients))
        yield stack
    finally:
        for proc in procs:
            proc.stop()


def _wait_ready(url: str, stack: Stack, limit_s: float = 180) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if dead := [p.name for p in stack.procs if not p.alive()]:
            pytest.fail(f"{dead} exited during start:\n{stack.logs()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} not ready after {limit_s}s:\n{stack.logs()}")


def _spec(stack: Stack) -> JobSpec:
    return JobSpec.model_validate(
        {
            "mode": "federated",
            "model": "mlp",
            "dataset": stack.dataset,
            "rounds": 2,
            "clients_per_round": 2,
            "min_clients": 2,
            "round_deadline_seconds": 120,
            "training": {"local_epochs": 1, "batch_size": 32, "learning_rate": 0.1},
            "strategy": {"name": "fedavg"},
            "privacy": {"mode": "none"},
            "seed": 20240607,
        }
    )


async def _registered_sha256(stack: Stack, job_id: str, limit_s: float = 60) -> str:
    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient(base_url=stack.registry, timeout=10) as http:
        while time.monotonic() < deadline:
            answer = await http.get(f"/v1/jobs/{job_id}/model", params={"tenant": TENANT})
            if answer.status_code == 200:
                return str(answer.json()["artifact"]["sha256"])
            await asyncio.sleep(0.5)
    pytest.fail(f"job {job_id} was not registered:\n{stack.logs()}")


async def _run_job(stack: Stack) -> Run:
    job_id = str(uuid.uuid4())
    request = JobRequested.create(
        source="repro-test", job_id=job_id, tenant=TENANT, spec=_spec(stack)
    )
    topics = ["round.started", "round.completed", "job.completed", "job.failed", "job.rejected"]
    async with EventWatcher(stack.settings, topics) as watch:
        async with EventProducer(stack.settings, client_id="repro-test") as producer:
            await producer.publish(request)
        end = await watch.wait_for(
            lambda e: e.job_id == job_id and isinstance(e, JobCompleted | JobFailed | JobRejected),
            limit_s=300,
        )
    assert isinstance(end, JobCompleted), f"{end}\n{stack.logs()}"
    assert end.final_model is not None
    mine: list[Event] = [e for e in watch.seen if e.job_id == job_id]
    return Run(
        selected={e.round: list(e.selected_clients) for e in mine if isinstance(e, RoundStarted)},
        round_models={
            e.round: e.global_model.sha256 for e in mine if isinstance(e, RoundCompleted)
        },
        registered=await _registered_sha256(stack, job_id),
        final=end.final_model.sha256,
    )


async def test_the_same_job_run_twice_gives_the_same_model_bytes_in_every_round(
    stack: Stack,
) -> None:
    first = await _run_job(stack)
    again = await _run_job(stack)

    assert sorted(first.round_models) == [1, 2]
    assert all(len(clients) == 2 for clients in first.selected.values())
    assert again.selected == first.selected
    assert again.round_models == first.round_models
    assert first.final == first.round_models[2]
    assert first.registered == first.final
    assert again.registered == first.registered
