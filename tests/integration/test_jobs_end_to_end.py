"""Jobs end to end: the five services and three trainers as real processes on the real stack.

One cluster per module (digits in three partitions under a unique dataset name, fresh consumer
groups at the end of every topic); each test runs its own job through it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from fedbus.bus import EventProducer, ensure_topics
from fedbus.events import (
    DeadLetter,
    Event,
    JobCompleted,
    JobFailed,
    JobRejected,
    JobRequested,
    JobSpec,
    JobStatus,
    RoundCompleted,
    RoundStarted,
    TrainerHeartbeat,
    TrainerStatus,
    UpdateSubmitted,
    load_topics,
)
from fedbus.settings import FedbusSettings, load_settings
from fedbus.storage import S3ArtifactStore, artifact_cipher
from fedbus_executor import PrepareOptions, prepare_dataset

from .announce import announced
from .harness import EventWatcher, ServiceProcess, free_port, fresh_group, trainer_env, unique

E = TypeVar("E", bound=Event)

pytestmark = pytest.mark.slow

KEY_A, KEY_B = "key-" + uuid.uuid4().hex, "key-" + uuid.uuid4().hex
SCOPES = ["jobs:write", "jobs:read", "models:read"]
WATCHED = [
    "job.accepted",
    "job.rejected",
    "job.completed",
    "job.failed",
    "round.started",
    "round.completed",
    "update.submitted",
    "job.requested.dlq",
]


@dataclass
class Cluster:
    """The running processes and how to restart each of them."""

    settings: FedbusSettings
    dataset: str
    gateway: str
    registry: str
    log_dir: Path
    artifact_key_id: str = ""
    starters: dict[str, Callable[[], ServiceProcess]] = field(default_factory=dict)
    procs: dict[str, ServiceProcess] = field(default_factory=dict)

    def start(self, name: str) -> None:
        self.procs[name] = self.starters[name]()

    def kill(self, name: str) -> None:
        self.procs[name].stop(sig=9)

    def all_alive(self) -> list[str]:
        return [n for n, p in self.procs.items() if not p.alive()]

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{p.text()[-3000:]}" for n, p in self.procs.items())


def _starters(
    cluster: Cluster, data: Path, groups: dict[str, str], extra_env: dict[str, str] | None = None
) -> None:
    keys = json.dumps(
        [
            {"key": KEY_A, "tenant": "tenant-a", "scopes": SCOPES},
            {"key": KEY_B, "tenant": "tenant-b", "scopes": SCOPES},
        ]
    )
    gw_port, reg_port = cluster.gateway.rsplit(":", 1)[1], cluster.registry.rsplit(":", 1)[1]
    common = {"FEDBUS_HEARTBEAT_SECONDS": "1", "FEDBUS_STATE_DIR": str(cluster.log_dir / "state")}
    bases: dict[str, dict[str, str]] = {}  # trainers: their own env file, no DSN, no MinIO keys
    specs: dict[str, tuple[str, list[str], dict[str, str]]] = {
        "model-registry": ("fedbus_registry", [], {"FEDBUS_HTTP_PORT": reg_port}),
        "orchestration": (
            "fedbus_orchestration",
            [],
            {"FEDBUS_ROUND_GRACE_SECONDS": "3", "FEDBUS_MAX_ROUND_RETRIES": "1"},
        ),
        "aggregator": (
            "fedbus_aggregator",
            ["--eval-data", f"{cluster.dataset}={data / 'test.parquet'}"],
            {},
        ),
        "gateway": (
            "fedbus_gateway",
            [],
            {
                "FEDBUS_HTTP_PORT": gw_port,
                "FEDBUS_GATEWAY_API_KEYS": keys,
                "FEDBUS_REGISTRY_URL": cluster.registry,
            },
        ),
    }
    for i in range(3):
        part = data / "clients" / f"client-{i:03d}.parquet"
        client = f"{cluster.dataset}-c{i}"
        specs[f"trainer-{i}"] = (
            "fedbus_trainer",
            ["--client-id", client, "--data", f"{cluster.dataset}={part}", "--device", "cpu"],
            {"OMP_NUM_THREADS": "1"},
        )
        bases[f"trainer-{i}"] = trainer_env(cluster.settings, client)
    for name, (module, args, env) in specs.items():
        full_env = {**common, **env, **(extra_env or {})}
        if name not in bases:  # a trainer's group is its principal's own, trainer-<client_id>
            full_env["FEDBUS_CONSUMER_GROUP"] = groups[name]
        cluster.starters[name] = functools.partial(
            ServiceProcess.start, name, module, log_dir=cluster.log_dir, args=args, env=full_env,
            base_env=bases.get(name),
        )  # fmt: skip


async def _prepare_groups(settings: FedbusSettings, names: list[str]) -> dict[str, str]:
    await ensure_topics(settings)
    topics = [t.name for t in load_topics().event_topics()]
    groups = {name: unique(f"e2e-{name}") for name in names}
    await asyncio.gather(*(fresh_group(settings, g, topics) for g in groups.values()))
    return groups


def _wait_http(url: str, cluster: Cluster, limit_s: float = 180) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if dead := cluster.all_alive():
            pytest.fail(f"{dead} exited during start:\n{cluster.logs()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} not ready after {limit_s}s:\n{cluster.logs()}")


async def _wait_heartbeats(settings: FedbusSettings, clients: set[str]) -> None:
    async with EventWatcher(settings, ["trainer.heartbeat"]) as watch:
        for client in clients:

            def beat(e: Event, c: str = client) -> bool:
                return isinstance(e, TrainerHeartbeat) and e.client_id == c

            await watch.wait_for(beat, limit_s=180)


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, settings: FedbusSettings
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("e2e")
    data = prepare_dataset("digits", root / "data", PrepareOptions(num_clients=3, seed=0)).root
    cluster = Cluster(
        settings=settings,
        dataset=unique("digits"),
        log_dir=root,
        gateway=f"http://127.0.0.1:{free_port()}",
        registry=f"http://127.0.0.1:{free_port()}",
    )
    names = [
        "model-registry",
        "orchestration",
        "aggregator",
        "gateway",
        *(f"trainer-{i}" for i in range(3)),
    ]
    _encrypt_artifacts(cluster)
    _starters(cluster, data, asyncio.run(_prepare_groups(settings, names)))
    try:
        for name in names:
            cluster.start(name)
        _wait_http(f"{cluster.gateway}/readyz", cluster)
        _wait_http(f"{cluster.registry}/readyz", cluster)
        asyncio.run(_wait_heartbeats(settings, {f"{cluster.dataset}-c{i}" for i in range(3)}))
        time.sleep(2)
        yield cluster
    finally:
        for proc in cluster.procs.values():
            proc.stop()


def _encrypt_artifacts(cluster: Cluster) -> None:
    """The key id every object of the cluster's jobs must name.

    The cluster's processes and the CLI read the stack's keyring (the key file `make up`
    writes into .env, or the conftest's stack key), so they encrypt with its current key.
    """
    cipher = artifact_cipher(cluster.settings)
    assert cipher is not None, "the integration settings hold no artifact key"
    cluster.artifact_key_id = cipher.current_key_id


def _spec(cluster: Cluster, **overrides: Any) -> dict[str, Any]:
    spec = {
        "mode": "federated",
        "model": "mlp",
        "dataset": cluster.dataset,
        "rounds": 3,
        "clients_per_round": 3,
        "min_clients": 2,
        "round_deadline_seconds": 90,
        "training": {"local_epochs": 1, "batch_size": 32, "learning_rate": 0.1},
        "strategy": {"name": "fedavg"},
        "privacy": {"mode": "none"},
        "seed": 1,
    }
    return {**spec, **overrides}


async def _http(
    method: str, url: str, *, tls: FedbusSettings | None = None, **kwargs: Any
) -> httpx.Response:
    """One request; ``tls``: settings whose MinIO CA an https URL (a presigned link) must use."""
    verify = tls.minio_ssl_context() if tls is not None else True
    async with httpx.AsyncClient(timeout=30, verify=verify) as client:
        return await client.request(method, url, **kwargs)


async def _submit(cluster: Cluster, spec: dict[str, Any], key: str = KEY_A) -> str:
    response = await _http(
        "POST",
        f"{cluster.gateway}/v1/jobs",
        json={"spec": spec},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def _of(job_id: str, kind: type[Event]) -> Callable[[Event], bool]:
    return lambda e: isinstance(e, kind) and e.job_id == job_id


async def _until_end(watch: EventWatcher, job_id: str, limit_s: float = 300) -> Event:
    return await watch.wait_for(
        lambda e: e.job_id == job_id and isinstance(e, JobCompleted | JobFailed | JobRejected),
        limit_s=limit_s,
    )


def _seen(events: list[Event], job_id: str, kind: type[E]) -> list[E]:
    """The events of ``kind`` of one job, in the order they were seen."""
    return [e for e in events if isinstance(e, kind) and e.job_id == job_id]


def _per_round(events: list[Event], job_id: str) -> dict[int, set[str]]:
    """The ids of the job's ``update.submitted`` events, by round."""
    rounds: dict[int, set[str]] = {}
    for e in _seen(events, job_id, UpdateSubmitted):
        rounds.setdefault(e.round, set()).add(e.event_id)
    return rounds


async def test_a_federated_job_through_the_gateway_completes_and_registers_a_model(
    cluster: Cluster, tmp_path: Path
) -> None:
    # Submitted and followed with the `fedbus` CLI, a process of its own, as a user would.
    spec_file = tmp_path / "job.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(cluster)))
    async with EventWatcher(cluster.settings, WATCHED) as watch:
        cli = await _cli_process(cluster, "jobs", "submit", str(spec_file), "--watch")
        assert cli.stdout is not None
        job_id = (await cli.stdout.readline()).decode().strip()  # printed first
        end, (out, _) = await asyncio.gather(
            _until_end(watch, job_id), asyncio.wait_for(cli.communicate(), timeout=300)
        )

    assert cli.returncode == 0, out.decode(errors="replace")  # --watch: 0 once it completes

    assert isinstance(end, JobCompleted), cluster.logs()
    assert end.rounds_completed == 3
    assert {r: len(ids) for r, ids in _per_round(watch.seen, job_id).items()} == {
        1: 3,
        2: 3,
        3: 3,
    }
    headers = {"Authorization": f"Bearer {KEY_A}"}
    status = (await _http("GET", f"{cluster.gateway}/v1/jobs/{job_id}", headers=headers)).json()
    assert status["status"] == "completed"
    other = await _http(
        "GET", f"{cluster.gateway}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {KEY_B}"}
    )
    assert other.status_code == 404
    version = await _registered(cluster, job_id, headers)
    assert end.final_model is not None
    assert version["artifact"]["sha256"] == end.final_model.sha256
    body = (await _http("GET", version["download_url"], tls=cluster.settings)).content
    assert body.startswith(b"FBE2")  # the link serves the object as stored: ciphertext
    assert hashlib.sha256(body).hexdigest() != version["artifact"]["sha256"]
    _assert_only_ciphertext(cluster, job_id)
    code, listing = await _cli(cluster, "jobs", "list")
    assert code == 0, listing
    assert job_id in listing
    model = tmp_path / "model.safetensors"
    name, number = f"mlp-{cluster.dataset}", str(version["version"])
    code, said = await _cli(cluster, "models", "download", name, number, "--output", str(model))
    assert code == 0, said  # the CLI checks the SHA-256 as it downloads
    assert hashlib.sha256(model.read_bytes()).hexdigest() == version["artifact"]["sha256"]


async def _cli_process(
    cluster: Cluster, *args: str, key: str = KEY_A
) -> asyncio.subprocess.Process:
    """``fedbus <group> <command> ...`` against the cluster's gateway, as a process."""
    command = [str(Path(sys.executable).with_name("fedbus")), *args[:2]]
    command += ["--gateway", cluster.gateway, "--api-key", key, *args[2:]]
    return await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )


def _assert_only_ciphertext(cluster: Cluster, job_id: str) -> None:
    """Every object under the job's prefix in MinIO is an FBE2 envelope under the cluster's key."""
    s3 = S3ArtifactStore.from_settings(cluster.settings)
    pages = s3._s3.get_paginator("list_objects_v2").paginate(
        Bucket=s3.bucket, Prefix=f"jobs/{job_id}/"
    )
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    key_id = cluster.artifact_key_id
    header = b"FBE2" + bytes([len(key_id)]) + key_id.encode()
    heads = {
        k: s3._s3.get_object(Bucket=s3.bucket, Key=k, Range="bytes=0-63")["Body"].read()
        for k in keys
    }
    assert any("/updates/" in k for k in keys), keys  # the trainers' updates
    assert any("/global/" in k for k in keys), keys  # the aggregator's models
    assert {k: h[: len(header)] for k, h in heads.items() if not h.startswith(header)} == {}


async def _cli(cluster: Cluster, *args: str, key: str = KEY_A) -> tuple[int, str]:
    """Run ``fedbus <args>`` to its end; its exit code and output."""
    proc = await _cli_process(cluster, *args, key=key)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    return int(proc.returncode or 0), out.decode(errors="replace")


async def _registered(cluster: Cluster, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    name = f"mlp-{cluster.dataset}"
    for _ in range(60):
        listing = await _http(
            "GET", f"{cluster.gateway}/v1/models/{name}/versions", headers=headers
        )
        if listing.status_code == 200:
            for v in listing.json()["versions"]:
                if v["job_id"] == job_id:
                    one = await _http(
                        "GET",
                        f"{cluster.gateway}/v1/models/{name}/versions/{v['version']}",
                        headers=headers,
                    )
                    return dict(one.json())
        await asyncio.sleep(1)
    pytest.fail(f"job {job_id} was not registered:\n{cluster.logs()}")


async def test_a_centralized_job_runs_through_the_same_events_with_one_trainer(
    cluster: Cluster,
) -> None:
    async with EventWatcher(cluster.settings, WATCHED) as watch:
        job_id = await _submit(
            cluster,
            _spec(cluster, mode="centralized", rounds=1, clients_per_round=None, min_clients=1),
        )
        end = await _until_end(watch, job_id)

    assert isinstance(end, JobCompleted), cluster.logs()
    started = _seen(watch.seen, job_id, RoundStarted)
    assert [len(e.selected_clients) for e in started] == [1]


async def test_a_job_published_straight_to_kafka_by_an_outside_producer_runs(
    cluster: Cluster,
) -> None:
    job_id = str(uuid.uuid4())
    request = JobRequested.create(
        source="upstream-test",
        job_id=job_id,
        tenant="tenant-a",
        spec=JobSpec.model_validate(_spec(cluster, rounds=1)),
    )
    async with EventWatcher(cluster.settings, WATCHED) as watch:
        async with EventProducer(cluster.settings, client_id="upstream-test") as producer:
            await producer.publish(request)
        end = await _until_end(watch, job_id)

    assert isinstance(end, JobCompleted), cluster.logs()


async def test_malformed_job_requests_are_rejected_or_dead_lettered_and_nothing_dies(
    cluster: Cluster,
) -> None:
    bad_id, unknown_id = str(uuid.uuid4()), str(uuid.uuid4())
    unknown = JobRequested.create(
        source="upstream-test",
        job_id=unknown_id,
        tenant="tenant-a",
        spec=JobSpec.model_validate(_spec(cluster, model="no-such-net")),
    )
    async with EventWatcher(cluster.settings, WATCHED) as watch:
        async with EventProducer(cluster.settings, client_id="upstream-test") as producer:
            await producer.publish_raw(
                "job.requested", b'{"type": "job.requested", "spec": 7', key=bad_id.encode()
            )
            await producer.publish(unknown)
        rejected = await watch.wait_for(_of(unknown_id, JobRejected), limit_s=60)
        letter = await watch.wait_for(
            lambda e: isinstance(e, DeadLetter) and e.original_key() == bad_id.encode(), limit_s=60
        )

    assert isinstance(rejected, JobRejected)
    assert [r.code for r in rejected.reasons] == ["unknown_model"]
    assert isinstance(letter, DeadLetter)
    assert "bad_json" in letter.error_message
    await asyncio.sleep(2)
    assert cluster.all_alive() == [], cluster.logs()


async def test_kill_9_of_the_aggregator_mid_round_and_orchestration_between_rounds(
    cluster: Cluster,
) -> None:
    async with EventWatcher(cluster.settings, WATCHED) as watch:
        job_id = await _submit(cluster, _spec(cluster, seed=7))
        await watch.wait_for(_of(job_id, UpdateSubmitted), limit_s=120)
        cluster.kill("aggregator")
        cluster.start("aggregator")
        await watch.wait_for(
            lambda e: isinstance(e, RoundCompleted) and e.job_id == job_id and e.round == 1,
            limit_s=180,
        )
        cluster.kill("orchestration")
        cluster.start("orchestration")
        end = await _until_end(watch, job_id)

    assert isinstance(end, JobCompleted), cluster.logs()
    updates = _per_round(watch.seen, job_id)
    assert {r: len(ids) for r, ids in updates.items()} == {1: 3, 2: 3, 3: 3}
    completed = _seen(watch.seen, job_id, RoundCompleted)
    assert sorted({e.round for e in completed}) == [1, 2, 3]
    assert all(len(e.participants) == 3 for e in completed)
    assert len({(e.round, e.event_id) for e in completed}) == 3


class Ghosts:
    """Trainers that announce a dataset and never train: stragglers on demand."""

    def __init__(self, settings: FedbusSettings, dataset: str, clients: list[str]) -> None:
        self.settings, self.dataset, self.clients = settings, dataset, clients
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._beat()), daemon=True)

    def __enter__(self) -> Ghosts:
        self._thread.start()
        time.sleep(3)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    async def _beat(self) -> None:
        async with EventProducer(self.settings, client_id="ghosts") as producer:
            while not self._stop.is_set():
                for client in self.clients:
                    await producer.publish(
                        TrainerHeartbeat.create(
                            source="test",
                            job_id="",
                            client_id=client,
                            device="cpu",
                            **announced(self.dataset, 100),
                            status=TrainerStatus.IDLE,
                            capacity=1,
                            interval_seconds=1,
                        )
                    )
                await asyncio.sleep(1)


async def test_a_straggler_that_never_answers_lets_the_round_close_at_its_deadline(
    cluster: Cluster,
) -> None:
    ghost = f"{cluster.dataset}-ghost"
    with Ghosts(load_settings(), cluster.dataset, [ghost]):
        async with EventWatcher(cluster.settings, WATCHED) as watch:
            job_id = await _submit(
                cluster,
                _spec(
                    cluster, rounds=1, clients_per_round=4, min_clients=3, round_deadline_seconds=25
                ),
            )
            end = await _until_end(watch, job_id)

    assert isinstance(end, JobCompleted), cluster.logs()
    [done] = _seen(watch.seen, job_id, RoundCompleted)
    assert ghost not in done.participants
    assert [(d.client_id, d.code) for d in done.dropped] == [(ghost, "deadline")]


async def test_too_few_clients_by_the_deadline_fails_the_job_with_its_reason(
    cluster: Cluster,
) -> None:
    lonely = unique("nobody-trains")
    with Ghosts(load_settings(), lonely, [f"{lonely}-a", f"{lonely}-b"]):
        async with EventWatcher(cluster.settings, WATCHED) as watch:
            job_id = await _submit(
                cluster,
                _spec(
                    cluster,
                    dataset=lonely,
                    rounds=1,
                    clients_per_round=2,
                    min_clients=2,
                    round_deadline_seconds=3,
                ),
            )
            end = await _until_end(watch, job_id, limit_s=120)

    assert isinstance(end, JobFailed), cluster.logs()
    assert end.code == "too_few_clients"
    assert "round 1" in end.message


async def test_a_running_job_cancelled_with_the_cli_ends_cancelled_for_its_tenant_only(
    cluster: Cluster,
) -> None:
    async with EventWatcher(cluster.settings, WATCHED) as watch:
        # many long rounds: the job is still running when the cancellation comes
        training = {"local_epochs": 30, "batch_size": 32, "learning_rate": 0.1}
        job_id = await _submit(cluster, _spec(cluster, rounds=50, training=training))
        await watch.wait_for(_of(job_id, RoundStarted), limit_s=120)
        code, other = await _cli(cluster, "jobs", "cancel", job_id, key=KEY_B)
        assert code == 2, other  # another tenant's job: not found, nothing cancelled
        code, out = await _cli(cluster, "jobs", "cancel", job_id, "--reason", "enough")
        assert code == 0, out
        end = await _until_end(watch, job_id)

    assert isinstance(end, JobCompleted), cluster.logs()
    assert end.status is JobStatus.CANCELLED
    assert end.rounds_completed < 50
    headers = {"Authorization": f"Bearer {KEY_A}"}
    for _ in range(30):  # the gateway's read model follows the events
        status = (await _http("GET", f"{cluster.gateway}/v1/jobs/{job_id}", headers=headers)).json()
        if status["status"] == "cancelled":
            break
        await asyncio.sleep(1)
    assert status["status"] == "cancelled"
