"""Round overhead: round wall time minus the slowest selected client's local training time.

Starts orchestration, aggregator and N trainer processes on MNIST-5k partitions (the local
stack must be up: `make up`), publishes a federated job straight to Kafka, and reads the
timing from the events themselves: `round.started.time` -> `round.completed.time` is the
round's wall time, and each `update.submitted.metrics["duration_s"]` is a client's training
time. Goal (issue 5): <= 1 s per round.

    .venv/bin/python bench/round_overhead.py --trainers 10 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType

from fedbus.bus import EventProducer
from fedbus.events import (
    Event,
    JobCompleted,
    JobFailed,
    JobRejected,
    JobRequested,
    JobSpec,
    RoundCompleted,
    RoundStarted,
    UpdateSubmitted,
    decode,
)
from fedbus.settings import load_settings

REPO = Path(__file__).resolve().parents[1]


def _demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fedbus_demo", REPO / "deploy/local/demo.py")
    if spec is None or spec.loader is None:
        raise SystemExit("cannot load deploy/local/demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare(trainers: int) -> Path:
    root = REPO / "data" / f"bench-{trainers}"
    if not (root / "mnist" / "manifest.json").exists():
        subprocess.run(
            [
                str(REPO / ".venv/bin/fedbus"),
                "data",
                "prepare",
                "--dataset",
                "mnist",
                "--out",
                str(root),
                "--clients",
                str(trainers),
                "--partition",
                "iid",
                "--seed",
                "0",
            ],
            check=True,
            capture_output=True,
        )
    return root / "mnist"


async def watch_job(job_id: str, request: JobRequested) -> list[Event]:
    from aiokafka import AIOKafkaConsumer

    settings = load_settings()
    topics = [
        "round.started",
        "update.submitted",
        "round.completed",
        "job.completed",
        "job.failed",
        "job.rejected",
    ]
    consumer = AIOKafkaConsumer(
        *topics, **settings.kafka_client_options(), group_id=None, auto_offset_reset="latest"
    )
    await consumer.start()
    await asyncio.sleep(2)
    events: list[Event] = []
    async with EventProducer(settings, client_id="bench") as producer:
        await producer.publish(request)
    try:
        while True:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    event = decode(record.value or b"")
                    if event.job_id == job_id:
                        events.append(event)
                        if isinstance(event, JobCompleted | JobFailed | JobRejected):
                            return events
    finally:
        await consumer.stop()


def report(events: list[Event], trainers: int) -> None:
    started = {e.round: e.time for e in events if isinstance(e, RoundStarted)}
    done = {e.round: e.time for e in events if isinstance(e, RoundCompleted)}
    slowest: dict[int, float] = {}
    for e in events:
        if isinstance(e, UpdateSubmitted):
            slowest[e.round] = max(slowest.get(e.round, 0.0), e.metrics.get("duration_s", 0.0))
    print(f"{trainers} trainer processes; round wall time, slowest client's training, overhead")
    overheads = []
    for r in sorted(done):
        wall = (done[r] - started[r]).total_seconds()
        overheads.append(wall - slowest.get(r, 0.0))
        print(
            f"  round {r}: wall {wall:6.2f} s  slowest client {slowest.get(r, 0):6.2f} s  "
            f"overhead {overheads[-1]:5.2f} s"
        )
    if overheads:
        print(
            f"overhead per round: median {statistics.median(overheads):.2f} s, "
            f"max {max(overheads):.2f} s  (goal <= 1 s)"
        )
    print(f"job ended with {type(events[-1]).__name__}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trainers", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    demo, data = _demo(), prepare(args.trainers)
    procs, run = demo.Processes(), uuid.uuid4().hex[:8]
    clients = [f"bench-{run}-{i:03d}" for i in range(args.trainers)]
    groups = {n: f"bench-{run}-{n}" for n in ["orchestration", "aggregator", *clients]}
    asyncio.run(demo.fresh_groups(list(groups.values())))
    try:
        procs.start(
            "orchestration",
            ["-m", "fedbus_orchestration"],
            {"FEDBUS_CONSUMER_GROUP": groups["orchestration"]},
        )
        procs.start(
            "aggregator",
            ["-m", "fedbus_aggregator", "--eval-data", f"mnist={data / 'test.parquet'}"],
            {"FEDBUS_CONSUMER_GROUP": groups["aggregator"]},
        )
        for i, client in enumerate(clients):
            procs.start(
                client,
                [
                    "-m",
                    "fedbus_trainer",
                    "--client-id",
                    client,
                    "--data",
                    f"mnist={data / 'clients' / f'client-{i:03d}.parquet'}",
                    "--device",
                    "cpu",
                ],
                {"FEDBUS_CONSUMER_GROUP": groups[client], "OMP_NUM_THREADS": "1"},
            )
        t0 = time.monotonic()
        asyncio.run(demo.wait_heartbeats(set(clients), procs, limit_s=900))
        print(f"{args.trainers} trainers up in {time.monotonic() - t0:.0f} s")
        job_id = str(uuid.uuid4())
        spec = JobSpec.model_validate(
            {
                "mode": "federated",
                "model": "cnn",
                "dataset": "mnist",
                "rounds": args.rounds,
                "clients_per_round": args.trainers,
                "min_clients": args.trainers,
                "round_deadline_seconds": 600,
                "training": {"local_epochs": 1, "batch_size": 32, "learning_rate": 0.05},
                "seed": 3,
            }
        )
        request = JobRequested.create(source="bench", job_id=job_id, tenant="bench", spec=spec)
        report(asyncio.run(watch_job(job_id, request)), args.trainers)
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
