"""The privacy-accountant as a real process against Kafka and PostgreSQL.

Trainer and aggregator events go straight to Kafka; the accountant answers with
``budget.updated``. Then it is killed, its state dropped, and a new consumer group rebuilds
the same numbers from the topics; ``fedbus privacy report`` agrees with both.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from subprocess import PIPE, STDOUT

import asyncpg
import pytest

from fedbus.bus import EventProducer, ensure_topics
from fedbus.events import (
    BudgetUpdated,
    DpUsage,
    Event,
    JobAccepted,
    JobMode,
    JobSpec,
    ModelRef,
    PrivacyMode,
    PrivacySpec,
    RoundCompleted,
    UpdateSubmitted,
)
from fedbus.privacy import GaussianSteps, compute_epsilon_composed
from fedbus.settings import FedbusSettings

from .harness import EventWatcher, ServiceProcess, fresh_group, unique

TOPICS = ["job.accepted", "update.submitted", "round.completed"]
DP = DpUsage(noise_multiplier=1.1, sample_rate=0.05, steps=40, clipping_norm=1.0)
DELTA = 1e-5
REF = ModelRef(object_key="jobs/x/round-1/global/" + "d" * 64, size_bytes=1, sha256="d" * 64)


def eps(rounds: int) -> float:
    """What fedbus.privacy says ``rounds`` rounds of DP cost one client."""
    return compute_epsilon_composed(history=[GaussianSteps(1.1, 0.05, 40)] * rounds, delta=DELTA)


@pytest.fixture
async def producer(settings: FedbusSettings) -> AsyncIterator[EventProducer]:
    async with EventProducer(settings, client_id="it-accountant") as p:
        yield p


@pytest.fixture
async def schema(settings: FedbusSettings) -> AsyncIterator[str]:
    """A PostgreSQL schema of its own, so dropping its state touches no other accountant."""
    name = unique("it_accountant").replace("-", "_")
    yield name
    conn = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    finally:
        await conn.close()


async def accountant_tables(settings: FedbusSettings, schema: str) -> list[str]:
    conn = await asyncpg.connect(settings.postgres_dsn.get_secret_value())
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", schema
        )
    finally:
        await conn.close()
    return [r["tablename"] for r in rows if r["tablename"].startswith("accountant_")]


def start_accountant(tmp_path: Path, group: str, schema: str) -> ServiceProcess:
    return ServiceProcess.start(
        "privacy-accountant", "fedbus_accountant", log_dir=tmp_path,
        env={"FEDBUS_CONSUMER_GROUP": group, "FEDBUS_ACCOUNTANT_SCHEMA": schema},
    )  # fmt: skip


def accepted(job_id: str) -> JobAccepted:
    privacy = PrivacySpec(
        mode=PrivacyMode.LOCAL_DP, target_epsilon=8.0, delta=DELTA, clipping_norm=1.0
    )
    spec = JobSpec(
        mode=JobMode.FEDERATED, model="cnn", dataset=unique("ds"), rounds=2, privacy=privacy
    )
    return JobAccepted.create(
        source="it", job_id=job_id, tenant="it", request_event_id=str(uuid.uuid4()), spec=spec
    )


def round_events(job_id: str, round_: int, clients: list[str]) -> list[Event]:
    def update(client: str) -> UpdateSubmitted:
        return UpdateSubmitted.create(
            source="it", job_id=job_id, round=round_, client_id=client, update=REF,
            num_samples=800, dp=DP,
        )  # fmt: skip

    done = RoundCompleted.create(
        source="it", job_id=job_id, round=round_, global_model=REF, participants=clients,
        total_samples=1600,
    )  # fmt: skip
    return [*(update(c) for c in clients), done]


async def command(
    *args: str, env: dict[str, str] | None = None, limit_s: float = 120
) -> tuple[int, str]:
    """Run a program without blocking the loop; its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=PIPE, stderr=STDOUT, env={**os.environ, **(env or {})}
    )
    out, _ = await asyncio.wait_for(proc.communicate(), limit_s)
    return await proc.wait(), out.decode(errors="replace")


async def budgets(watch: EventWatcher, job_id: str, rounds: int) -> dict[int, BudgetUpdated]:
    """Wait until ``budget.updated`` of rounds 1..``rounds`` of the job have been seen."""
    found: dict[int, BudgetUpdated] = {}
    for round_ in range(1, rounds + 1):

        def of_round(e: Event, r: int = round_) -> bool:
            return isinstance(e, BudgetUpdated) and e.job_id == job_id and e.round == r

        event = await watch.wait_for(of_round, limit_s=90)
        assert isinstance(event, BudgetUpdated)
        found[round_] = event
    return found


def spent(event: BudgetUpdated) -> dict[str, float]:
    return {"total": event.total.epsilon_spent} | {
        c: s.epsilon_spent for c, s in event.clients.items()
    }


async def test_budgets_survive_a_crash_and_a_rebuild_from_the_topics(
    settings: FedbusSettings, producer: EventProducer, tmp_path: Path, schema: str
) -> None:
    await ensure_topics(settings)
    group = await fresh_group(settings, unique("it-accountant"), TOPICS)
    job_id = str(uuid.uuid4())
    first_round = round_events(job_id, 1, ["client-a", "client-b"])
    proc = start_accountant(tmp_path, group, schema)
    try:
        async with EventWatcher(settings, ["budget.updated"]) as watch:
            await producer.publish_many([accepted(job_id), *first_round])
            await budgets(watch, job_id, 1)
            await producer.publish(first_round[0])  # the same update.submitted again
            await producer.publish_many(round_events(job_id, 2, ["client-a", "client-b"]))
            live = await budgets(watch, job_id, 2)
    finally:
        proc.stop(9)  # kill -9: no graceful shutdown
    log = proc.text()

    assert spent(live[1]) == pytest.approx(
        {"total": eps(1), "client-a": eps(1), "client-b": eps(1)}, abs=1e-12
    ), log[-3000:]
    assert spent(live[2]) == pytest.approx(
        {"total": eps(2), "client-a": eps(2), "client-b": eps(2)}, abs=1e-12
    )  # the duplicate update did not spend again
    assert not live[2].exhausted
    assert len(await accountant_tables(settings, schema)) == 4

    code, output = await command(
        sys.executable, "-m", "fedbus_accountant", "--reset-state",
        env={"FEDBUS_ACCOUNTANT_SCHEMA": schema, "FEDBUS_CONSUMER_GROUP": group}, limit_s=60,
    )  # fmt: skip
    assert code == 0, output
    assert await accountant_tables(settings, schema) == []
    rebuilt_proc = start_accountant(
        tmp_path, unique("it-accountant-rebuild"), schema
    )  # from earliest
    try:
        async with EventWatcher(settings, ["budget.updated"]) as watch:
            rebuilt = await budgets(watch, job_id, 2)
    finally:
        rebuilt_proc.stop()

    for round_ in (1, 2):
        for name, value in spent(rebuilt[round_]).items():
            assert math.isclose(value, spent(live[round_])[name], rel_tol=0, abs_tol=1e-12)
        assert rebuilt[round_].event_id == live[round_].event_id

    fedbus = str(Path(sys.executable).with_name("fedbus"))
    code, report = await command(fedbus, "privacy", "report", "--job", job_id)
    assert code == 0, report
    rows = [line.split() for line in report.splitlines() if line.endswith("  match")]
    assert [(r[0], r[1]) for r in rows] == [
        (str(round_), name) for round_ in (1, 2) for name in ("(total)", "client-a", "client-b")
    ]
    assert report.splitlines()[-1] == "all match"
    assert "MISMATCH" not in report
