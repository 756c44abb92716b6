"""The registry certifies only what the privacy accountant's ledger says (issue 13, item 2).

A real registry process on Kafka, MinIO and PostgreSQL. The events go straight to Kafka, as
anyone who can write to it could send them: a DP job's ``job.accepted``, its ten
``round.completed``, the accountant's ``budget.updated`` of each round (7.96 spent in the
end), then a ``job.completed`` whose guarantee says 0.01.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from fedbus.bus import EventProducer, ensure_topics
from fedbus.events import (
    BudgetStatus,
    BudgetUpdated,
    DeadLetter,
    Event,
    JobAccepted,
    JobCompleted,
    JobMode,
    JobSpec,
    JobStatus,
    ModelRef,
    ModelRegistered,
    PrivacyBudget,
    PrivacyGuarantee,
    PrivacyMode,
    PrivacySpec,
    RoundCompleted,
)
from fedbus.settings import FedbusSettings
from fedbus.storage import S3ArtifactStore

from .harness import EventWatcher, ServiceProcess, fresh_group, unique
from .test_registry_service import TOPICS, _wait_for_port

ROUNDS = 10
SPENT = [0.796 * n for n in range(1, ROUNDS + 1)]  # the ledger: 7.96 after round 10
LEDGER_WAIT_S = 5


@pytest.fixture
async def registry(
    settings: FedbusSettings, tmp_path: Path
) -> AsyncIterator[tuple[ServiceProcess, str]]:
    """The registry process (its own group, at the end of its topics) and its base URL."""
    group = unique("it-registry-ledger")
    await ensure_topics(settings)
    await fresh_group(settings, group, TOPICS)
    env = {"FEDBUS_CONSUMER_GROUP": group, "FEDBUS_LEDGER_WAIT_S": str(LEDGER_WAIT_S)}
    proc = ServiceProcess.start("model-registry", "fedbus_registry", log_dir=tmp_path, env=env)
    try:
        yield proc, f"http://127.0.0.1:{await _wait_for_port(proc)}"
    finally:
        proc.stop()


@pytest.fixture
async def producer(settings: FedbusSettings) -> AsyncIterator[EventProducer]:
    async with EventProducer(settings, client_id="it-registry-ledger") as p:
        yield p


async def dp_job_events(
    artifacts: S3ArtifactStore, tenant: str, *, claimed: float, ledger_rounds: int = ROUNDS
) -> tuple[str, list[Event], JobCompleted]:
    """A central-DP job's accepted, rounds and ledger events, and its ``job.completed``."""
    job_id = str(uuid.uuid4())
    weights = {"fc.weight": np.random.default_rng(7).normal(size=(4, 3)).astype(np.float32)}
    model = await artifacts.put_tensors(weights, prefix=f"jobs/{job_id}/round-{ROUNDS}/global")
    privacy = PrivacySpec(
        mode=PrivacyMode.CENTRAL_DP, target_epsilon=8.0, delta=1e-5, clipping_norm=1.0
    )
    spec = JobSpec(
        mode=JobMode.FEDERATED, model="cnn", dataset=unique("ds"), rounds=ROUNDS, privacy=privacy
    )
    events: list[Event] = [
        JobAccepted.create(
            source="orchestration",
            job_id=job_id,
            tenant=tenant,
            request_event_id=str(uuid.uuid4()),
            spec=spec,
        ),
        *(round_completed(job_id, n, model) for n in range(1, ROUNDS + 1)),
        *(budget_updated(job_id, n) for n in range(1, ledger_rounds + 1)),
    ]
    guarantee = PrivacyGuarantee(
        mode=PrivacyMode.CENTRAL_DP, epsilon=claimed, delta=1e-5, accountant="rdp",
        noise_multiplier=1.1, clipping_norm=1.0, rounds=ROUNDS,
    )  # fmt: skip
    done = JobCompleted.create(
        source="orchestration", job_id=job_id, status=JobStatus.COMPLETED,
        rounds_completed=ROUNDS, final_model=model, guarantee=guarantee,
    )  # fmt: skip
    return job_id, events, done


def round_completed(job_id: str, number: int, model: ModelRef) -> RoundCompleted:
    return RoundCompleted.create(
        source="aggregator", job_id=job_id, round=number, global_model=model,
        participants=["client-a", "client-b"], total_samples=200, metrics={"accuracy": 0.7},
    )  # fmt: skip


def budget_updated(job_id: str, number: int) -> BudgetUpdated:
    spent = SPENT[number - 1]
    return BudgetUpdated.create(
        source="privacy-accountant", job_id=job_id, round=number,
        budget=PrivacyBudget(epsilon=8.0, delta=1e-5),
        total=BudgetStatus(epsilon_spent=spent, epsilon_remaining=8.0 - spent, delta=1e-5),
        exhausted=False,
    )  # fmt: skip


async def job_model(base_url: str, job_id: str, tenant: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        return await http.get(f"/v1/jobs/{job_id}/model", params={"tenant": tenant})


async def test_a_forged_guarantee_is_dead_lettered_and_the_honest_one_registers(
    settings: FedbusSettings, registry: tuple[ServiceProcess, str], producer: EventProducer
) -> None:
    proc, base_url = registry
    artifacts = S3ArtifactStore.from_settings(settings)
    tenant = unique("tenant")
    forged_job, forged_events, forged = await dp_job_events(artifacts, tenant, claimed=0.01)
    honest_job, honest_events, honest = await dp_job_events(artifacts, tenant, claimed=SPENT[-1])

    async with EventWatcher(settings, ["model.registered", "job.completed.dlq"]) as watch:
        await producer.publish_many([*forged_events, forged])
        letter = await watch.wait_for(lambda e: e.job_id == forged_job, limit_s=60)
        await producer.publish_many([*honest_events, honest])
        registered = await watch.wait_for(lambda e: e.job_id == honest_job, limit_s=60)

    assert isinstance(letter, DeadLetter), proc.text()[-3000:]
    assert letter.original_topic == "job.completed"
    assert (
        f"job.completed says epsilon 0.01, the accountant's ledger says {SPENT[-1]!r} "
        f"after round {ROUNDS}" in letter.error_message
    )
    assert (await job_model(base_url, forged_job, tenant)).status_code == 404

    assert isinstance(registered, ModelRegistered), proc.text()[-3000:]
    assert registered.guarantee is not None
    assert registered.guarantee.epsilon == SPENT[-1]
    served = await job_model(base_url, honest_job, tenant)
    assert served.status_code == 200
    assert served.json()["privacy"]["epsilon"] == SPENT[-1]
    assert served.json()["privacy"]["mode"] == "central_dp"


async def test_a_dp_job_whose_ledger_stops_short_is_refused_in_the_end(
    settings: FedbusSettings, registry: tuple[ServiceProcess, str], producer: EventProducer
) -> None:
    proc, base_url = registry
    artifacts = S3ArtifactStore.from_settings(settings)
    tenant = unique("tenant")
    job_id, events, done = await dp_job_events(
        artifacts, tenant, claimed=SPENT[-1], ledger_rounds=ROUNDS - 2
    )

    async with EventWatcher(settings, ["model.registered", "job.completed.dlq"]) as watch:
        await producer.publish_many([*events, done])
        letter = await watch.wait_for(lambda e: e.job_id == job_id, limit_s=60)

    assert isinstance(letter, DeadLetter), proc.text()[-3000:]
    assert letter.original_topic == "job.completed"
    assert f"no budget.updated for round(s) {ROUNDS - 1}, {ROUNDS}" in letter.error_message
    assert (await job_model(base_url, job_id, tenant)).status_code == 404
