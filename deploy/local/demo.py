"""`make demo`: one federated job end to end on the local stack, with live progress.

Prepares MNIST-5k into 10 non-IID client partitions, starts the model-registry,
orchestration, aggregator and gateway services and 10 trainer processes, submits
``examples/demo-mnist.yaml`` through the gateway, follows the job's Server-Sent Events, prints
the final accuracy, the rounds, the model version and where its artifact is, then stops every
process it started. On a stack with Kafka SASL (the default of ``make up``) every
service runs as its own principal ``svc-<name>`` and every trainer as ``trainer-<client_id>``
(created on first use), each limited by the ACLs of its role. Each service signs its events
with its own key (named in ``principals/svc-<name>.env``, with or without SASL), each trainer
with its own. Every trainer runs from its own env file (``stack.py principal trainer``),
without the PostgreSQL DSN or MinIO keys. Run with the project's virtualenv after `make up`:

    .venv/bin/python deploy/local/demo.py [--spec examples/demo-mnist.yaml] [--trainers 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiokafka import AIOKafkaConsumer
from httpx_sse import connect_sse

from fedbus.bus import ensure_topics, reset_group_to_end
from fedbus.datalayout import DEFAULT_CLIENT_NAMES, client_file, client_ids
from fedbus.events import TrainerHeartbeat, assigned_topic, decode, load_topics
from fedbus.settings import FedbusSettings, load_settings

REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("FEDBUS_STATE_DIR", REPO / ".fedbus"))
LOGS = STATE / "logs" / "demo"
PRINCIPALS = STATE / "principals"
GATEWAY_PORT = int(os.environ.get("FEDBUS_DEMO_GATEWAY_PORT", "18080"))
REGISTRY_PORT = int(os.environ.get("FEDBUS_DEMO_REGISTRY_PORT", "18081"))


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


class Processes:
    """The processes this demo started; all of them are stopped on the way out."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self, name: str, args: list[str], env: dict[str, str], base: dict[str, str] | None = None
    ) -> None:
        """Start ``python <args>`` with ``env`` over ``base`` (default: this environment)."""
        LOGS.mkdir(parents=True, exist_ok=True)
        with (LOGS / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**(os.environ if base is None else base), "PYTHONUNBUFFERED": "1", **env},
                cwd=REPO,
                start_new_session=True,
            )

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise SystemExit(f"[demo] {name} exited ({proc.returncode}); see {LOGS / name}.log")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        say(f"stopped {len(self.procs)} processes (logs in {LOGS})")


def prepare_data(dataset: str, clients: int) -> Path:
    root = REPO / "data"
    manifest = root / dataset / "manifest.json"
    wanted = [client_file(root / dataset, c) for c in client_ids(DEFAULT_CLIENT_NAMES, clients)]
    if manifest.exists() and all(path.is_file() for path in wanted):
        say(f"data: reusing {root / dataset}")
        return root / dataset
    say(f"data: preparing {dataset} into {clients} non-IID partitions (Dirichlet alpha 0.5)")
    subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "fedbus"),
            "data",
            "prepare",
            "--dataset",
            dataset,
            "--out",
            str(root),
            "--clients",
            str(clients),
            "--partition",
            "dirichlet",
            "--alpha",
            "0.5",
            "--seed",
            "42",
        ],
        check=True,
    )
    return root / dataset


async def fresh_groups(groups: list[str], clients: list[str]) -> None:
    """Each demo run is a fresh deployment: its consumer groups start at the end of the log,
    so events left by earlier runs or tests on the same broker are not replayed (a trainer's
    group on its own ``round.assigned.<client_id>``)."""
    settings: FedbusSettings = load_settings()
    await ensure_topics(settings)
    # A family name moves every member there is (each tenant's upstream.job.requested.<t>).
    topics = [t.name for t in load_topics().event_topics() if t.name != "round.assigned"]
    await asyncio.gather(
        *(reset_group_to_end(settings, t, g) for g in groups for t in topics),
        *(reset_group_to_end(settings, assigned_topic(c), f"trainer-{c}") for c in clients),
    )


def principal_env(name: str, settings: FedbusSettings) -> dict[str, str]:
    """Service principal ``name``'s Kafka credentials (none on a stack without SASL, whose
    ``.env`` serves every service) and its signing key, so it signs as itself."""
    path = PRINCIPALS / f"{name}.env"
    if not path.exists():
        return {}
    kept: tuple[str, ...] = ("FEDBUS_SIGNING_KEY_FILE",)
    if settings.kafka_sasl_mechanism is not None:
        kept += ("FEDBUS_KAFKA_",)
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.startswith(kept))


def trainer_base_env(client: str, settings: FedbusSettings) -> dict[str, str]:
    """A trainer's whole environment, as a data owner runs it: ``FEDBUS_ENV_FILE`` names its
    own file from ``stack.py principal trainer`` (its principal with SASL, the CAs, the
    artifact keys; no DSN, no MinIO keys), and no other ``FEDBUS_*`` variable of this shell."""
    path = PRINCIPALS / f"trainer-{client}.env"
    text = path.read_text() if path.exists() else ""
    if f"FEDBUS_CLIENT_ID={client}" not in text or "FEDBUS_SIGNING_KEY_FILE=" not in text:
        port = settings.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)[1]
        subprocess.run(
            [sys.executable, str(REPO / "deploy" / "local" / "stack.py"), "principal",
             "trainer", client],
            env={**os.environ, "FEDBUS_STATE_DIR": str(STATE), "FEDBUS_KAFKA_PORT": port},
            check=True,
        )  # fmt: skip
    kept = {"FEDBUS_ARTIFACT_KEYS", "FEDBUS_ARTIFACT_KEY_ID"}  # keys a trainer must hold
    base = {k: v for k, v in os.environ.items() if not k.startswith("FEDBUS_") or k in kept}
    return {**base, "FEDBUS_ENV_FILE": str(path)}


def start_services(procs: Processes, data: Path, dataset: str, trainers: int, key: str) -> None:
    run = secrets.token_hex(4)
    clients = client_ids(DEFAULT_CLIENT_NAMES, trainers)  # client_file() names their data
    names = ["model-registry", "orchestration", "aggregator", "gateway", "privacy-accountant"]
    # A service's principal may use the groups named after it; a trainer's, only its own
    # (trainer-<client_id>, its default).
    groups = {n: f"{n}-demo-{run}" for n in names}
    settings: FedbusSettings = load_settings()
    trainer_bases = {c: trainer_base_env(c, settings) for c in clients}  # makes their topics
    say(f"run {run}: moving {len(groups) + len(clients)} consumer groups to the end of the log")
    asyncio.run(fresh_groups(list(groups.values()), clients))
    keys = json.dumps(
        [{"key": key, "tenant": "demo", "scopes": ["jobs:write", "jobs:read", "models:read"]}]
    )

    def env(name: str, **extra: str) -> dict[str, str]:
        return {"FEDBUS_CONSUMER_GROUP": groups[name], **principal_env(f"svc-{name}", settings),
                **extra}  # fmt: skip

    procs.start(
        "model-registry",
        ["-m", "fedbus_registry"],
        env("model-registry", FEDBUS_HTTP_PORT=str(REGISTRY_PORT)),
    )
    procs.start("orchestration", ["-m", "fedbus_orchestration"], env("orchestration"))
    procs.start("privacy-accountant", ["-m", "fedbus_accountant"], env("privacy-accountant"))
    procs.start(
        "aggregator",
        ["-m", "fedbus_aggregator", "--eval-data", f"{dataset}={data / 'test.parquet'}"],
        env("aggregator"),
    )
    procs.start(
        "gateway",
        ["-m", "fedbus_gateway"],
        env(
            "gateway",
            FEDBUS_HTTP_PORT=str(GATEWAY_PORT),
            FEDBUS_GATEWAY_API_KEYS=keys,
            FEDBUS_REGISTRY_URL=f"http://127.0.0.1:{REGISTRY_PORT}",
        ),
    )
    for client in clients:
        part = client_file(data, client)
        procs.start(
            f"trainer-{client}",
            [
                "-m",
                "fedbus_trainer",
                "--client-id",
                client,
                "--data",
                f"{dataset}={part}",
                "--device",
                "cpu",
            ],
            {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
            trainer_bases[client],
        )
    say(f"started {', '.join(names)} and {trainers} trainers")


def wait_ready(procs: Processes, http: httpx.Client, limit_s: float = 180) -> None:
    deadline = time.monotonic() + limit_s
    for url in (
        f"http://127.0.0.1:{GATEWAY_PORT}/readyz",
        f"http://127.0.0.1:{REGISTRY_PORT}/readyz",
    ):
        while True:
            procs.check()
            try:
                if http.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"[demo] {url} not ready after {limit_s:.0f}s; logs in {LOGS}")
            time.sleep(0.5)


async def wait_heartbeats(clients: set[str], procs: Processes, limit_s: float = 300) -> None:
    """Wait until every trainer has announced itself on ``trainer.heartbeat``."""
    settings: FedbusSettings = load_settings()
    consumer = AIOKafkaConsumer(
        "trainer.heartbeat",
        **settings.kafka_client_options(),
        group_id=None,
        auto_offset_reset="latest",
    )
    await consumer.start()
    seen: set[str] = set()
    deadline = time.monotonic() + limit_s
    try:
        while seen < clients:
            procs.check()
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"[demo] no heartbeat from {sorted(clients - seen)}; logs in {LOGS}"
                )
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    event = decode(record.value or b"")
                    if isinstance(event, TrainerHeartbeat):
                        seen.add(event.client_id)
    finally:
        await consumer.stop()
    say(f"all {len(clients)} trainers are up and sending heartbeats")
    await asyncio.sleep(2)  # one more heartbeat interval for orchestration to register them


def follow(
    http: httpx.Client, key: str, job_id: str, rounds: int, procs: Processes
) -> dict[str, Any]:
    """Print the job's events as they stream.

    If the stream drops, it is reopened with ``Last-Event-ID``: the gateway sends what was
    missed, and no event is printed twice.
    """
    headers = {"Authorization": f"Bearer {key}"}
    url = f"http://127.0.0.1:{GATEWAY_PORT}/v1/jobs/{job_id}"
    last_id = ""
    for _ in range(20):
        final: dict[str, Any] = {}
        resume = {"Last-Event-ID": last_id} if last_id else {}
        with connect_sse(
            http, "GET", f"{url}/events", headers={**headers, **resume},
            timeout=httpx.Timeout(10, read=600),
        ) as source:  # fmt: skip
            stream = source.response
            if stream.status_code != 200:
                say(f"event stream refused: {stream.status_code} {stream.read().decode()}")
                time.sleep(1)
                continue
            for sse in source.iter_sse():
                procs.check()
                if sse.id:  # the status frame has no id; every event has its sequence
                    last_id = sse.id
                if sse.data:  # a keep-alive comment dispatches as an event without data
                    final = show(sse.event, sse.json(), rounds) or final
        if final:
            return final
        status = http.get(url, headers=headers).json()
        if status.get("status") not in {"requested", "accepted", "running"}:
            return {"type": f"job.{status.get('status')}", **status}
    raise SystemExit("[demo] lost the event stream 20 times")


def show(kind: str, event: dict[str, Any], rounds: int) -> dict[str, Any] | None:
    if kind == "round.started":
        say(f"round {event['round']}/{rounds}: {len(event['selected_clients'])} clients training")
    elif kind == "round.completed":
        m = event.get("metrics", {})
        acc, loss = m.get("accuracy", float("nan")), m.get("loss", float("nan"))
        say(
            f"round {event['round']}/{rounds} done: {len(event['participants'])} updates, "
            f"test accuracy {acc:.4f}, loss {loss:.4f}"
        )
    elif kind in {"job.completed", "job.failed", "job.rejected"}:
        return {"type": kind, **event}
    elif kind == "job.accepted":
        say("job accepted by orchestration")
    return None


def report(http: httpx.Client, key: str, job_id: str, final: dict[str, Any], started: float) -> int:
    say(
        f"job {job_id} ended: {final.get('type')} {final.get('status', '')} "
        f"after {time.monotonic() - started:.0f}s"
    )
    if final.get("type") != "job.completed" or final.get("status") not in {
        "completed",
        "budget_exhausted",
    }:
        say(f"reason: {final.get('code', '')} {final.get('message', final.get('reasons', ''))}")
        return 1
    metrics = final.get("metrics", {})
    accuracy = metrics.get("accuracy", 0.0)
    say(f"rounds: {final.get('rounds_completed')}, final test accuracy: {accuracy:.4f}")
    guarantee = final.get("guarantee")
    if guarantee:
        say(
            f"privacy ({guarantee['mode']}): epsilon spent {guarantee['epsilon']:.3f} "
            f"at delta {guarantee['delta']:g}, recorded by the privacy-accountant"
        )
    headers = {"Authorization": f"Bearer {key}"}
    base = f"http://127.0.0.1:{GATEWAY_PORT}/v1/models"
    for _ in range(30):
        models = http.get(base, headers=headers).json()
        version = _version_of(http, base, headers, models, job_id)
        if version:
            say(
                f"model {version['name']} version {version['version']} "
                f"(sha256 {version['artifact']['sha256'][:16]}...)"
            )
            say(
                f"artifact: s3://{os.environ.get('FEDBUS_MINIO_BUCKET', 'fedbus')}/"
                f"{version['artifact']['object_key']}"
            )
            return 0
        time.sleep(1)
    say("the model was not registered within 30 s")
    return 1


def _version_of(
    http: httpx.Client, base: str, headers: dict[str, str], models: Any, job_id: str
) -> dict[str, Any] | None:
    for model in models if isinstance(models, list) else models.get("models", []):
        name = model["name"]
        versions = http.get(f"{base}/{name}/versions", headers=headers).json()
        for v in versions if isinstance(versions, list) else versions.get("versions", []):
            if v.get("job_id") == job_id:
                return dict(v)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(REPO / "examples" / "demo-mnist.yaml"))
    parser.add_argument("--trainers", type=int, default=10)
    args = parser.parse_args()
    spec = yaml.safe_load(Path(args.spec).read_text())
    data = prepare_data(spec["dataset"], args.trainers)
    key, procs = secrets.token_urlsafe(24), Processes()
    try:
        start_services(procs, data, spec["dataset"], args.trainers, key)
        with httpx.Client() as http:
            wait_ready(procs, http)
            clients = set(client_ids(DEFAULT_CLIENT_NAMES, args.trainers))
            asyncio.run(wait_heartbeats(clients, procs))
            started = time.monotonic()
            response = http.post(
                f"http://127.0.0.1:{GATEWAY_PORT}/v1/jobs",
                headers={"Authorization": f"Bearer {key}"},
                json={"spec": spec},
            )
            if response.status_code != 202:
                say(f"submission refused: {response.status_code} {response.text}")
                return 1
            job_id = response.json()["job_id"]
            say(f"submitted job {job_id} through the gateway ({spec['rounds']} rounds)")
            final = follow(http, key, job_id, spec["rounds"], procs)
            return report(http, key, job_id, final, started)
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
