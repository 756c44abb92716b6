"""Helpers for integration tests that run fedbus services as real processes.

>>> svc = ServiceProcess.start("aggregator", "fedbus_aggregator", log_dir=tmp_path,
...                            env={"FEDBUS_CONSUMER_GROUP": group}, args=["--eval-data", ...])
>>> async with EventWatcher(settings, ["round.completed"]) as watch:
...     event = await watch.wait_for(lambda e: e.job_id == job_id, limit_s=120)
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from dotenv import dotenv_values
from pydantic import SecretStr

from fedbus.bus import ensure_topics, reset_group_to_end
from fedbus.events import Event, EventDecodeError, TrainerHeartbeat, decode, load_topics
from fedbus.settings import FedbusSettings

__all__ = [
    "REPO",
    "EventWatcher",
    "ServiceProcess",
    "create_principal",
    "env_file",
    "free_port",
    "fresh_group",
    "principal_env",
    "principal_settings",
    "read_all",
    "state_dir",
    "trainer_env",
    "unique",
]

REPO = Path(__file__).resolve().parents[2]


def env_file() -> Path:
    """The stack's env file: ``$FEDBUS_ENV_FILE``, else ``<repo>/.env`` (what `make up` wrote)."""
    return Path(os.environ.get("FEDBUS_ENV_FILE") or REPO / ".env")


def state_dir() -> Path:
    """The stack's state directory (``FEDBUS_STATE_DIR`` of its env file)."""
    return Path(dotenv_values(env_file()).get("FEDBUS_STATE_DIR") or REPO / ".fedbus")


def principal_env(name: str) -> dict[str, str]:
    """Principal ``name``'s env file, for a process's env: its Kafka credentials
    (``FEDBUS_KAFKA_SASL_*``, when the stack has SASL) and its signing key
    (``FEDBUS_SIGNING_KEY_FILE``), so the process signs as itself.

    Empty when ``stack.py`` wrote no file for it: the process then uses the ``.env``'s.
    """
    path = state_dir() / "principals" / f"{name}.env"
    if not path.exists():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def principal_settings(settings: FedbusSettings, name: str) -> FedbusSettings:
    """``settings`` with principal ``name``'s Kafka credentials and signing key instead of the
    admin's (the root keys stay the ``.env``'s: they are the same for every principal)."""
    creds = principal_env(name)
    if not creds:
        raise LookupError(f"no credentials for Kafka principal {name} under {state_dir()}")
    update: dict[str, object] = {}
    if "FEDBUS_KAFKA_SASL_USERNAME" in creds:
        update["kafka_sasl_username"] = creds["FEDBUS_KAFKA_SASL_USERNAME"]
        update["kafka_sasl_password"] = SecretStr(creds["FEDBUS_KAFKA_SASL_PASSWORD"])
    if creds.get("FEDBUS_SIGNING_KEY_FILE"):
        update["signing_key_file"] = Path(creds["FEDBUS_SIGNING_KEY_FILE"])
    return settings.model_copy(update=update)


def create_principal(settings: FedbusSettings, role: str, ident: str) -> str:
    """``stack.py principal <role> <ident>`` on the stack of ``settings``; its principal name."""
    port = settings.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)[1]
    env = {**os.environ, "FEDBUS_STATE_DIR": str(state_dir()), "FEDBUS_KAFKA_PORT": port,
           "FEDBUS_ENV_FILE": str(env_file())}  # fmt: skip
    subprocess.run(
        [sys.executable, str(REPO / "deploy" / "local" / "stack.py"), "principal", role, ident],
        env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return f"{role}-{ident}"


TRAINER_KEPT = frozenset({"FEDBUS_ARTIFACT_KEYS", "FEDBUS_ARTIFACT_KEY_ID"})
"""``FEDBUS_*`` variables a trainer process may inherit: the artifact keys it must hold."""


def trainer_env(settings: FedbusSettings, client_id: str) -> dict[str, str]:
    """The environment a trainer process starts with, as a data owner would run it.

    ``stack.py principal trainer <client_id>`` writes its env file (its own Kafka principal
    when the stack has SASL, the CAs, the artifact keys; no DSN, no MinIO keys) and creates its
    topic; the process gets ``FEDBUS_ENV_FILE`` naming that file and none of this session's
    other ``FEDBUS_*`` variables, so no database or storage secret reaches it.
    """
    create_principal(settings, "trainer", client_id)
    path = state_dir() / "principals" / f"trainer-{client_id}.env"
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("FEDBUS_") or k in TRAINER_KEPT}  # fmt: skip
    return {**base, "FEDBUS_ENV_FILE": str(path)}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique(prefix: str) -> str:
    """``prefix`` plus 8 random hex digits (job ids, groups, dataset names)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def fresh_group(settings: FedbusSettings, group: str, topics: Sequence[str]) -> str:
    """Move consumer group ``group`` to the end of ``topics`` so it ignores older events.

    A family carrying one of their event types is moved too (every tenant's
    ``upstream.job.requested.<tenant>`` with ``job.requested``), as the service's runner reads
    its members.
    """
    families = [f.name for f in load_topics().families_carrying(topics) if f.name not in topics]
    for topic in [*topics, *families]:
        await reset_group_to_end(settings, topic, group)
    return group


class ServiceProcess:
    """A service started with ``python -m <module>``, its output in ``<log_dir>/<name>.log``."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.name, self.proc, self.log = name, proc, log

    @classmethod
    def start(
        cls,
        name: str,
        module: str,
        *,
        log_dir: Path,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        principal: str | None = None,
        base_env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ServiceProcess:
        """Start the process (``FEDBUS_HTTP_PORT=0`` unless ``env`` sets it).

        ``principal``: the Kafka principal whose credentials it uses, when the stack has
        them (``FEDBUS_KAFKA_AUTH=scram``); otherwise, and by default, the ``.env``'s.
        ``base_env``: the environment ``env`` is added to (default this process's; a trainer's
        is :func:`trainer_env`). ``cwd``: its working directory (default this process's).
        """
        log = log_dir / f"{name}.log"
        creds = principal_env(principal) if principal else {}
        base = os.environ if base_env is None else base_env
        # Started elsewhere, it still reads this stack's env file (by default ./.env).
        where = {"FEDBUS_ENV_FILE": str(env_file().resolve())} if cwd is not None else {}
        full_env = {**where, **base, "FEDBUS_HTTP_PORT": "0", "PYTHONUNBUFFERED": "1",
                    **creds, **(env or {})}  # fmt: skip
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, *args], stdout=out, stderr=subprocess.STDOUT,
                env=full_env, start_new_session=True, cwd=cwd,
            )  # fmt: skip
        return cls(name, proc, log)

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, *, wait_s: float = 20) -> None:
        """Send ``sig`` (SIGKILL for a crash) and wait for the process to end."""
        if self.alive():
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=wait_s)

    def text(self) -> str:
        """Everything the process logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class EventWatcher:
    """Reads events published from now on (no consumer group) and waits for matches."""

    def __init__(self, settings: FedbusSettings, topics: Sequence[str]) -> None:
        self._consumer = AIOKafkaConsumer(
            **settings.kafka_client_options(), group_id=None, enable_auto_commit=False,
            isolation_level="read_committed",
        )  # fmt: skip
        self._topics = list(topics)
        self.seen: list[Event] = []

    async def __aenter__(self) -> EventWatcher:
        await self._consumer.start()
        parts: list[TopicPartition] = []
        for topic in self._topics:
            ids = self._consumer.partitions_for_topic(topic)
            if not ids:
                await self._consumer._client.force_metadata_update()
                ids = self._consumer.partitions_for_topic(topic) or set()
            parts += [TopicPartition(topic, p) for p in sorted(ids)]
        self._consumer.assign(parts)
        await self._consumer.seek_to_end(*parts)
        for tp in parts:  # resolve the end offsets now, before the test publishes
            await self._consumer.position(tp)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._consumer.stop()

    async def poll(self) -> list[Event]:
        """Read what has arrived (undecodable records are skipped)."""
        new: list[Event] = []
        for records in (await self._consumer.getmany(timeout_ms=200)).values():
            for record in records:
                try:
                    new.append(decode(record.value or b""))
                except EventDecodeError:
                    continue
        self.seen += new
        return new

    async def wait_for(self, match: Callable[[Event], bool], *, limit_s: float = 120) -> Event:
        """The first event (already seen or new) for which ``match`` is true."""
        deadline = time.monotonic() + limit_s
        for event in self.seen:
            if match(event):
                return event
        while time.monotonic() < deadline:
            for event in await self.poll():
                if match(event):
                    return event
            await asyncio.sleep(0)
        raise TimeoutError(f"no matching event within {limit_s}s; saw {len(self.seen)} events")


async def read_all(
    settings: FedbusSettings, topic: str, group: str | None = None, *, limit_s: float = 30
) -> list[Event]:
    """Every event on ``topic``'s partition 0 so far, read as ``settings``' principal.

    ``group`` is the consumer group the principal may use (None: none, for the admin); the
    broker's refusal (TopicAuthorizationFailed, GroupAuthorizationFailed) is raised as is.
    """
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        out: list[Event] = []
        async with asyncio.timeout(limit_s):
            while await consumer.position(tp) < end:
                for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                    out += [decode(r.value or b"") for r in records]
        return out
    finally:
        await consumer.stop()


async def import_csv(csv: Path, out: Path, name: str, *, partition_by: str) -> Path:
    """``fedbus data import`` of a CSV with an ``outcome`` label and the features age, bmi and
    glucose, one client per value of ``partition_by``; the dataset folder it wrote."""
    done = await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).parent / "fedbus"), "data", "import", str(csv),
         "--label", "outcome", "--features", "age,bmi,glucose", "--partition-by", partition_by,
         "--name", name, "--out", str(out), "--seed", "1"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out / name


def patients_csv(path: Path, hospitals: Sequence[str], *, per_hospital: int, seed: int) -> None:
    """A CSV of patients (patient_id, hospital, age, bmi, glucose, outcome) in clinic units
    (years, kg/m2, mg/dL): outcome 1 when glucose is above 125, each hospital its own age range
    (not IID)."""
    rng = np.random.default_rng(seed)
    lines = ["patient_id,hospital,age,bmi,glucose,outcome"]
    for h, hospital in enumerate(hospitals):
        for i in range(per_hospital):
            z = rng.normal(0.0, 1.0)
            age, bmi = rng.normal(40 + 10 * h, 8), rng.normal(27.0, 3.0)
            lines.append(f"p{h}-{i},{hospital},{age:.0f},{bmi:.1f},{125 + 30 * z:.0f},{int(z > 0)}")
    path.write_text("\n".join(lines) + "\n")


async def start_coordination(
    settings: FedbusSettings,
    log_dir: Path,
    prefix: str,
    eval_data: str,
    *,
    cwd: Path | None = None,
    orchestration_env: Mapping[str, str] | None = None,
) -> list[ServiceProcess]:
    """Orchestration and an aggregator evaluating on ``eval_data`` (``NAME=PATH``), each with
    a fresh consumer group (``<prefix>-<service>-...``) at the end of every event topic."""
    await ensure_topics(settings)
    topics = [t.name for t in load_topics().event_topics()]
    groups = {name: unique(f"{prefix}-{name}") for name in ("orchestration", "aggregator")}
    await asyncio.gather(*(fresh_group(settings, g, topics) for g in groups.values()))
    return [
        ServiceProcess.start(
            "orchestration", "fedbus_orchestration", log_dir=log_dir,
            env={"FEDBUS_CONSUMER_GROUP": groups["orchestration"], **(orchestration_env or {})},
        ),
        ServiceProcess.start(
            "aggregator", "fedbus_aggregator", log_dir=log_dir, cwd=cwd,
            args=["--eval-data", eval_data], env={"FEDBUS_CONSUMER_GROUP": groups["aggregator"]},
        ),
    ]  # fmt: skip


async def wait_for_trainers(
    watch: EventWatcher,
    procs: Sequence[ServiceProcess],
    clients: Collection[str],
    *,
    limit_s: float = 180,
) -> dict[str, TrainerHeartbeat]:
    """Each of ``clients``' latest heartbeat, once all have sent one; fails naming a process
    that exited meanwhile, or with every process's log when one stays silent."""
    beats: dict[str, TrainerHeartbeat] = {}
    deadline = time.monotonic() + limit_s
    while set(beats) != set(clients) and time.monotonic() < deadline:
        beats |= {
            e.client_id: e for e in watch.seen
            if isinstance(e, TrainerHeartbeat) and e.client_id in clients
        }  # fmt: skip
        if dead := [p.name for p in procs if not p.alive()]:
            pytest.fail(f"{dead} exited during start:\n{logs_of(procs)}")
        await watch.poll()
    if set(beats) != set(clients):
        pytest.fail(f"trainers did not announce themselves:\n{logs_of(procs)}")
    return beats


def logs_of(procs: Sequence[ServiceProcess]) -> str:
    """The last lines each process logged, named."""
    return "\n".join(f"--- {p.name}\n{p.text()[-3000:]}" for p in procs)
