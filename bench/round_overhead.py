"""Round overhead: round wall time minus the slowest selected client's local training time.

Starts orchestration, aggregator and N trainer processes on MNIST-5k partitions (the local
stack must be up: `make up`), publishes a federated job straight to Kafka, and reads the
timing from the events themselves: `round.started.time` -> `round.completed.time` is the
round's wall time, and each `update.submitted.metrics["duration_s"]` is a client's training
time (the executor's whole run: data, setup, epochs). Goal (issue 5): <= 1 s per round.

Each round also gets a breakdown from the `progress` events (every process stamps its events
on the same clock): for the client whose update came last, the delay until it started
(`dispatch`: Kafka delivery to its trainer), `train` (its duration_s), the rest of its own
round (`client other`: global model download, upload, submit); then on the aggregator, from
that last `update.submitted` to `aggregating` (`judge`: consuming and validating it), the
combine and global upload (`combine`), and the server-side evaluation (`eval`). Trainer
memory (RSS, anonymous/private dirty, USS from /proc/<pid>/smaps_rollup) is printed once all
trainers are up and again after the job, with the machine's MemAvailable, and the CPU
seconds per round of the trainers, the services and the stack's Kafka, MinIO and PostgreSQL.
A memory guard stops the run before MemAvailable falls under ``--min-free-gib``.

    .venv/bin/python bench/round_overhead.py --trainers 10 --rounds 5
    .venv/bin/python bench/round_overhead.py --trainers 50 --rounds 3 --fork

Each trainer is a `python -m fedbus_trainer` process of its own (several hundred MB each:
torch); with ``--fork`` they are forked from one process that imported torch once, so that
their library pages are shared copy-on-write and 50 fit on a small machine. Either way each
trainer is a separate process with its own consumer, producer and S3 client.

Scheduling: the trainers stand in for data owners' machines, the services for the
platform's own. With ``--fork`` the trainers share one session, so Linux's autogroup
scheduler treats them as one group beside each service and Kafka, MinIO and PostgreSQL (as a
node's cgroup would); without it each trainer is a session, hence a group, of its own. On a
saturated machine that choice decides who waits: 50 trainers of their own weigh 50 times a
service. The round's wall time hardly changes; what changes is whether the platform's work
or the trainers' training waits, and so how much of the round counts as overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from fedbus.bus import EventProducer
from fedbus.events import (
    Event,
    JobCompleted,
    JobFailed,
    JobRejected,
    JobRequested,
    JobSpec,
    Phase,
    Progress,
    RoundCompleted,
    RoundStarted,
    UpdateSubmitted,
    decode,
)
from fedbus.settings import FedbusSettings, load_settings

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


async def watch_job(job_id: str, request: JobRequested, abort: threading.Event) -> list[Event]:
    from aiokafka import AIOKafkaConsumer

    settings = load_settings(FedbusSettings)
    topics = [
        "round.started",
        "update.submitted",
        "round.completed",
        "progress",
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
        while not abort.is_set():
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    event = decode(record.value or b"")
                    if event.job_id == job_id:
                        events.append(event)
                        if isinstance(event, JobCompleted | JobFailed | JobRejected):
                            return events
        return events
    finally:
        await consumer.stop()


def _seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def breakdown(events: list[Event], r: int) -> str:
    """Where round ``r``'s time went, along the path of its last update."""
    started = next(e for e in events if isinstance(e, RoundStarted) and e.round == r)
    updates = [e for e in events if isinstance(e, UpdateSubmitted) and e.round == r]
    progress = [e for e in events if isinstance(e, Progress) and e.round == r]
    done = next(e for e in events if isinstance(e, RoundCompleted) and e.round == r)
    if not updates:
        return "    (no updates)"
    last = max(updates, key=lambda e: e.time)
    first = [p.time for p in progress if p.client_id == last.client_id]
    agg = {p.phase: p.time for p in progress if p.client_id is None}
    dispatch = _seconds(min(first), started.time) if first else float("nan")
    train = last.metrics.get("duration_s", 0.0)
    own = _seconds(last.time, started.time) - dispatch - train
    uploading = [
        p.time for p in progress if p.client_id == last.client_id and p.phase is Phase.UPLOADING
    ]
    after = _seconds(last.time, uploading[0]) if uploading else float("nan")
    parts = [
        f"dispatch {dispatch:4.2f}",
        f"train {train:5.2f}",
        f"client other {own:4.2f} (before {own - after:4.2f}, after {after:4.2f})",
    ]
    if Phase.AGGREGATING in agg and Phase.EVALUATING in agg:
        parts += [
            f"judge {_seconds(agg[Phase.AGGREGATING], last.time):4.2f}",
            f"combine {_seconds(agg[Phase.EVALUATING], agg[Phase.AGGREGATING]):4.2f}",
            f"eval {_seconds(done.time, agg[Phase.EVALUATING]):4.2f}",
        ]
    return f"    last update ({last.client_id}): " + ", ".join(parts) + " s"


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
        print(breakdown(events, r))
    if overheads:
        print(
            f"overhead per round: median {statistics.median(overheads):.2f} s, "
            f"max {max(overheads):.2f} s  (goal <= 1 s)"
        )
    print(f"job ended with {type(events[-1]).__name__}" if events else "no events")


def _rollup(pid: int) -> dict[str, int]:
    """Memory of one process in MiB from /proc/<pid>/smaps_rollup."""
    values = dict.fromkeys(("Rss", "Pss", "Private_Clean", "Private_Dirty"), 0)
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                name, _, rest = line.partition(":")
                if name in values:
                    values[name] = int(rest.split()[0]) // 1024
    except OSError:
        return {}
    return values


def _mem_available_gib() -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def memory(label: str, pids: Iterable[int]) -> None:
    """Print trainer memory: median/max per process, and the sums of PSS and private dirty."""
    rows = [m for m in (_rollup(pid) for pid in pids) if m]
    if not rows:
        return

    def col(name: str) -> str:
        values = [m[name] for m in rows]
        return f"{statistics.median(values):.0f}/{max(values)}"

    uss = [m["Private_Clean"] + m["Private_Dirty"] for m in rows]
    print(
        f"trainer memory {label} ({len(rows)} processes, MiB, median/max): RSS {col('Rss')}, "
        f"PSS {col('Pss')}, private dirty {col('Private_Dirty')}, USS "
        f"{statistics.median(uss):.0f}/{max(uss)}; sums: PSS "
        f"{sum(m['Pss'] for m in rows) / 1024:.1f} GiB, private dirty "
        f"{sum(m['Private_Dirty'] for m in rows) / 1024:.1f} GiB; MemAvailable "
        f"{_mem_available_gib():.1f} GiB"
    )


def _cpu_seconds(pid: int, *, with_children: bool) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(f) for f in fields[11 : 15 if with_children else 13])  # utime stime (c...)
    return ticks / os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def cpu_snapshot(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each group of processes; PostgreSQL's with its backends."""
    tree = _children()
    out: dict[str, float] = {}
    for name, roots in groups.items():
        total, todo = 0.0, []
        for pid in roots:
            descend = name == "postgres"  # one process per connection
            total += _cpu_seconds(pid, with_children=descend)  # reaped backends too
            todo += tree.get(pid, []) if descend else []
        while todo:
            pid = todo.pop()
            total += _cpu_seconds(pid, with_children=False)
            todo += tree.get(pid, [])
        out[name] = total
    return out


def stack_pids() -> dict[str, list[int]]:
    """Kafka, MinIO and PostgreSQL of the local stack (`make up` writes their pids)."""
    run = Path(os.environ.get("FEDBUS_STATE_DIR", REPO / ".fedbus")) / "run"
    pids: dict[str, list[int]] = {}
    for name in ("kafka", "minio", "postgres"):
        with contextlib.suppress(OSError, ValueError):
            pids[name] = [int((run / f"{name}.pid").read_text())]
    return pids


def cpu_report(before: dict[str, float], after: dict[str, float], rounds: int, wall: float) -> None:
    """Print CPU seconds per round of each group (the machine has os.cpu_count() cores)."""
    used = {k: (after[k] - before[k]) / max(1, rounds) for k in before}
    parts = ", ".join(f"{k} {v:.2f}" for k, v in used.items())
    print(
        f"CPU seconds per round: {parts}; total {sum(used.values()):.2f} of "
        f"{os.cpu_count()} cores x {wall / max(1, rounds):.2f} s wall"
    )


class MemoryGuard:
    """Stops the bench before the machine runs out of memory (the OOM killer could pick the
    shared Kafka or PostgreSQL): below ``min_gib`` of MemAvailable it kills the trainers."""

    def __init__(self, min_gib: float, stop: Callable[[], None]) -> None:
        self.min_gib, self._stop = min_gib, stop
        self.tripped = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self.lowest = float("inf")

    def __enter__(self) -> MemoryGuard:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._done.wait(0.25):
            available = _mem_available_gib()
            self.lowest = min(self.lowest, available)
            if available < self.min_gib:
                print(f"MemAvailable {available:.1f} GiB < {self.min_gib} GiB: stopping the bench")
                self.tripped.set()
                self._stop()
                return


def fork_server() -> None:
    """Run as ``--fork-server``: import the trainer once, then fork one trainer per stdin line.

    Each line is JSON ``{"argv": [...], "env": {...}, "log": path}``; the child's pid is
    printed back. Children share the parent's pages (torch, and the torch._dynamo that
    torch.optim's first step imports) copy-on-write. End of stdin stops them all.
    """
    import torch._dynamo  # noqa: F401

    import fedbus_trainer.main

    gc.freeze()  # collections in the children leave the parent's objects (and pages) alone
    children: list[int] = []
    for line in sys.stdin:
        spec = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _run_child(spec, fedbus_trainer.main.run)
        children.append(pid)
        print(pid, flush=True)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for pid in children:
        while os.waitpid(pid, os.WNOHANG) == (0, 0):  # not exited yet
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.1)
    sys.stdout.flush()
    os._exit(0)  # skip finalization: triton's bindings complain of leaks at exit


def _run_child(spec: dict[str, Any], run: Callable[[list[str]], None]) -> None:
    code = 1
    try:
        # No setsid: the trainers share the fork server's session, so on a kernel with
        # autogroup scheduling they are one group, as one node's trainers would be under one
        # cgroup. Each in a session of its own, 50 emulated data owners were 50 groups, each
        # weighing as much as the aggregator or Kafka, which no deployment (the data owners
        # are other machines) has.
        log = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.environ.update(spec["env"])
        run(spec["argv"])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class ForkedTrainers:
    """Trainer processes forked by a ``--fork-server`` helper."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._server = subprocess.Popen(
            [sys.executable, __file__, "--fork-server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        if self._server.stdin is None or self._server.stdout is None:
            raise RuntimeError("the fork server has no pipes")
        self._requests, self._replies = self._server.stdin, self._server.stdout
        self.pids: list[int] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self._logs.mkdir(parents=True, exist_ok=True)
        spec = {"argv": argv, "env": env, "log": str(self._logs / f"{name}.log")}
        self._requests.write(json.dumps(spec) + "\n")
        self._requests.flush()
        self.pids.append(int(self._replies.readline()))

    def kill(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        self._requests.close()
        try:
            self._server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(self._server.pid, signal.SIGKILL)


def trainer_argv(client: str, dataset: str, data: Path, i: int) -> list[str]:
    part = data / "clients" / f"client-{i:03d}.parquet"
    return ["--client-id", client, "--data", f"{dataset}={part}", "--device", "cpu"]


def job_request(dataset: str, trainers: int, rounds: int) -> JobRequested:
    """The benchmark job: every trainer in every round, one local epoch of the CNN."""
    spec = JobSpec.model_validate(
        {
            "mode": "federated",
            "model": "cnn",
            "dataset": dataset,
            "rounds": rounds,
            "clients_per_round": trainers,
            "min_clients": trainers,
            "round_deadline_seconds": 600,
            "training": {"local_epochs": 1, "batch_size": 32, "learning_rate": 0.05},
            "seed": 3,
        }
    )
    return JobRequested.create(source="bench", job_id=str(uuid.uuid4()), tenant="bench", spec=spec)


class Bench:
    """The processes of one run: orchestration, aggregator and the trainers."""

    def __init__(self, trainers: int, *, fork: bool) -> None:
        self.demo, self.data = _demo(), prepare(trainers)
        self.procs, run = self.demo.Processes(), uuid.uuid4().hex[:8]
        self.dataset = f"mnist-{run}"  # trainers of other runs on this broker are never selected
        self.clients = [f"bench-{run}-{i:03d}" for i in range(trainers)]
        names = ["orchestration", "aggregator", *self.clients]
        self.groups = {n: f"bench-{run}-{n}" for n in names}
        asyncio.run(self.demo.fresh_groups(list(self.groups.values())))
        self.forked = ForkedTrainers(self.demo.LOGS) if fork else None

    def start(self) -> list[int]:
        """Start every process, wait for every trainer's heartbeat; the trainers' pids."""
        self._service("orchestration", ["-m", "fedbus_orchestration"])
        test = self.data / "test.parquet"
        self._service(
            "aggregator", ["-m", "fedbus_aggregator", "--eval-data", f"{self.dataset}={test}"]
        )
        for i, client in enumerate(self.clients):
            argv = trainer_argv(client, self.dataset, self.data, i)
            env = {"FEDBUS_CONSUMER_GROUP": self.groups[client], "OMP_NUM_THREADS": "1"}
            if self.forked is not None:
                self.forked.start(client, argv, env)
            else:
                self.procs.start(client, ["-m", "fedbus_trainer", *argv], env)
        t0 = time.monotonic()
        asyncio.run(self.demo.wait_heartbeats(set(self.clients), self.procs, limit_s=900))
        how = "forked from one parent" if self.forked else "python -m fedbus_trainer each"
        print(f"{len(self.clients)} trainers ({how}) up in {time.monotonic() - t0:.0f} s")
        if self.forked is not None:
            return list(self.forked.pids)
        return [self.procs.procs[c].pid for c in self.clients]

    def cpu_groups(self, trainers: list[int]) -> dict[str, list[int]]:
        """The processes whose CPU time is reported, by group."""
        return {
            "trainers": trainers,
            "aggregator": [self.procs.procs["aggregator"].pid],
            "orchestration": [self.procs.procs["orchestration"].pid],
            **stack_pids(),
            "bench": [os.getpid()],
        }

    def kill(self) -> None:
        """Stop everything at once (the memory guard's way out)."""
        if self.forked is not None:
            self.forked.kill()
        for proc in self.procs.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop everything, politely."""
        if self.forked is not None:
            self.forked.stop()
        self.procs.stop_all()

    def _service(self, name: str, args: list[str]) -> None:
        self.procs.start(name, args, {"FEDBUS_CONSUMER_GROUP": self.groups[name]})


def run_job(
    bench: Bench, trainers: list[int], args: argparse.Namespace, guard: MemoryGuard
) -> None:
    """Measure idle trainers, run the job, print memory, CPU and the rounds."""
    memory("idle", trainers)
    idle = cpu_snapshot({"trainers": trainers})["trainers"]
    time.sleep(10)
    idle = cpu_snapshot({"trainers": trainers})["trainers"] - idle
    print(f"idle trainers use {idle / 10:.2f} CPU seconds per second together")
    request = job_request(bench.dataset, len(trainers), args.rounds)
    groups = bench.cpu_groups(trainers)
    cpu_before, t0 = cpu_snapshot(groups), time.monotonic()
    events = asyncio.run(watch_job(request.job_id, request, guard.tripped))
    cpu_report(cpu_before, cpu_snapshot(groups), args.rounds, time.monotonic() - t0)
    memory(f"after {args.rounds} rounds", trainers)
    print(f"lowest MemAvailable during the run: {guard.lowest:.1f} GiB")
    report(events, len(trainers))
    if args.events_out is not None:
        args.events_out.write_text("".join(e.model_dump_json() + "\n" for e in events))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trainers", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--fork",
        action="store_true",
        help="fork the trainers from one process that imported torch (pages shared "
        "copy-on-write), so that many fit in memory; default: `python -m fedbus_trainer` each",
    )
    parser.add_argument("--min-free-gib", type=float, default=1.5, help="memory guard")
    parser.add_argument("--events-out", type=Path, help="write the job's events here (JSON lines)")
    parser.add_argument("--fork-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fork_server:
        fork_server()
        return
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at start")
    bench = Bench(args.trainers, fork=args.fork)
    guard = MemoryGuard(args.min_free_gib, bench.kill)
    try:
        with guard:
            run_job(bench, bench.start(), args, guard)
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
