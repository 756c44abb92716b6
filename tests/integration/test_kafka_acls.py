"""The broker enforces who may say what: SASL/SCRAM principals and the catalog's ACLs.

Runs against a stack started by ``make up`` (SASL is its default; each service has its
principal ``svc-<name>``; ``stack.py principal`` adds trainers and outside producers); on a
stack without SASL every test here is skipped. The attacker holds real credentials of some
principal, just not the one whose role produces the event.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError
from pydantic import SecretStr

from fedbus.bus import EventProducer
from fedbus.bus.acls import SERVICES
from fedbus.bus.signing import (
    KafkaKeyDirectory,
    key_id_of,
    key_record,
    load_private_key,
    publish_key,
)
from fedbus.events import (
    DatasetInfo,
    Event,
    JobAccepted,
    JobCancelRequested,
    JobCompleted,
    JobMode,
    JobSpec,
    JobStatus,
    ModelRegistered,
    PrivacySpec,
    RoundAssigned,
    RoundCompleted,
    StrategySpec,
    TrainerHeartbeat,
    TrainerStatus,
    TrainingConfig,
    encode,
    load_topics,
    utc_now,
)
from fedbus.settings import FedbusSettings, KafkaSecurityProtocol
from fedbus.storage import S3ArtifactStore

from .harness import (
    REPO,
    EventWatcher,
    ServiceProcess,
    create_principal,
    free_port,
    fresh_group,
    principal_settings,
    read_all,
    state_dir,
    unique,
)
from .test_registry_service import _wait_for_port

SEND_LIMIT_S = 30


@pytest.fixture
def secured(settings: FedbusSettings) -> FedbusSettings:
    """The admin settings of a stack with SASL on; skips the test on a stack without."""
    if settings.kafka_security_protocol is KafkaSecurityProtocol.PLAINTEXT:
        pytest.skip("the stack runs Kafka without SASL (FEDBUS_KAFKA_AUTH=none)")
    return settings


def bare_completed(job_id: str = "") -> JobCompleted:
    """A ``job.completed`` claiming to come from orchestration."""
    return JobCompleted.create(source="orchestration", job_id=job_id or str(uuid.uuid4()),
                               rounds_completed=0, status=JobStatus.COMPLETED)  # fmt: skip


async def send(settings: FedbusSettings, event: Event) -> None:
    """Publish ``event`` as the principal of ``settings`` (raises what the broker answers)."""
    async with EventProducer(settings, client_id="it-acls") as producer:
        async with asyncio.timeout(SEND_LIMIT_S):
            await producer.publish(event)


async def read_from_start(settings: FedbusSettings, topic: str, group: str) -> None:
    """Fetch ``topic``'s partition 0 from the beginning as ``settings``' principal."""
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.seek_to_beginning()
        async with asyncio.timeout(SEND_LIMIT_S):
            await consumer.getmany(timeout_ms=2000)
    finally:
        await consumer.stop()


@pytest.fixture
async def registry(secured: FedbusSettings, tmp_path: Path) -> AsyncIterator[str]:
    """The model registry as its own principal ``svc-model-registry``; its base URL."""
    group = unique("model-registry-it")  # the service's groups start with its name
    await fresh_group(secured, group, ["job.accepted", "round.completed", "job.completed"])
    proc = ServiceProcess.start(
        "model-registry", "fedbus_registry", log_dir=tmp_path,
        env={"FEDBUS_CONSUMER_GROUP": group}, principal="svc-model-registry",
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{await _wait_for_port(proc)}"
    finally:
        proc.stop()


async def test_forged_job_completed_from_a_principal_not_orchestration_is_refused(
    secured: FedbusSettings, registry: str
) -> None:
    aggregator = principal_settings(secured, "svc-aggregator")
    orchestration = principal_settings(secured, "svc-orchestration")
    artifacts = S3ArtifactStore.from_settings(secured)
    tenant, forged_job, real_job = unique("tenant"), str(uuid.uuid4()), str(uuid.uuid4())
    model = await artifacts.put_bytes(b"weights", prefix=f"jobs/{real_job}")
    spec = JobSpec(mode=JobMode.FEDERATED, model="cnn", dataset=unique("ds"), rounds=1)

    def accepted(job_id: str) -> JobAccepted:
        return JobAccepted.create(source="orchestration", job_id=job_id, tenant=tenant,
                                  request_event_id="r", spec=spec)  # fmt: skip

    def completed(job_id: str) -> JobCompleted:
        return JobCompleted.create(source="orchestration", job_id=job_id, rounds_completed=1,
                                   status=JobStatus.COMPLETED, final_model=model)  # fmt: skip

    with pytest.raises(TopicAuthorizationFailedError):
        await send(aggregator, accepted(forged_job))
    with pytest.raises(TopicAuthorizationFailedError):
        await send(aggregator, completed(forged_job))

    # The same facts from the principals whose roles produce them register a version.
    async with EventWatcher(secured, ["model.registered"]) as watch:
        await send(orchestration, accepted(real_job))
        await send(aggregator, RoundCompleted.create(
            source="aggregator", job_id=real_job, round=1, global_model=model,
            participants=["client-a"], total_samples=10, metrics={},
        ))  # fmt: skip
        await send(orchestration, completed(real_job))
        registered = await watch.wait_for(lambda e: e.job_id == real_job, limit_s=60)

    assert isinstance(registered, ModelRegistered)
    async with httpx.AsyncClient(base_url=registry, timeout=10) as http:
        forged = await http.get(f"/v1/jobs/{forged_job}/model", params={"tenant": tenant})
        models = (await http.get("/v1/models", params={"tenant": tenant})).json()["models"]
    assert forged.status_code == 404
    assert [m["latest_version"] for m in models] == [1]


async def test_a_trainer_cannot_read_updates_but_sends_its_heartbeat(
    secured: FedbusSettings,
) -> None:
    client_id = unique("site")
    trainer = principal_settings(secured, create_principal(secured, "trainer", client_id))
    own_group = f"trainer-{client_id}"
    beat = TrainerHeartbeat.create(
        source="trainer", job_id="", client_id=client_id, device="cpu",
        datasets=[DatasetInfo(name="d", num_samples=1)], status=TrainerStatus.IDLE,
        capacity=1, interval_seconds=60,
    )  # fmt: skip

    with pytest.raises(TopicAuthorizationFailedError):
        await read_from_start(trainer, "update.submitted", own_group)
    with pytest.raises(TopicAuthorizationFailedError):
        await send(trainer, bare_completed())
    await read_from_start(trainer, f"round.assigned.{client_id}", own_group)  # addressed to it
    async with EventWatcher(secured, ["trainer.heartbeat"]) as watch:
        await send(trainer, beat)
        seen = await watch.wait_for(lambda e: e.event_id == beat.event_id, limit_s=30)
    assert isinstance(seen, TrainerHeartbeat)
    assert seen.client_id == client_id


async def test_a_trainer_cannot_use_another_consumer_group(secured: FedbusSettings) -> None:
    client_id = unique("site")
    trainer = principal_settings(secured, create_principal(secured, "trainer", client_id))

    with pytest.raises(KafkaError):  # GroupAuthorizationFailed: not its trainer-<id> group
        await read_from_start(trainer, f"round.assigned.{client_id}", "aggregator")


async def test_a_trainer_reads_only_its_own_assignments(secured: FedbusSettings) -> None:
    """Not round.started (every round, every selection) and not another trainer's grants."""
    mine, other = unique("site-a"), unique("site-b")
    trainer = principal_settings(secured, create_principal(secured, "trainer", mine))
    create_principal(secured, "trainer", other)  # its topic exists, with the other's grants
    group = f"trainer-{mine}"

    aggregator = principal_settings(secured, "svc-aggregator")
    theirs, grant = _assignment(other), _assignment(mine)
    await send(aggregator, theirs)  # the aggregator writes every trainer's topic
    await send(aggregator, grant)

    with pytest.raises(TopicAuthorizationFailedError):
        await read_from_start(trainer, "round.started", group)
    # The other's topic: the broker will not even describe it to this principal, and a fetch
    # from offset 0 gets nothing (aiokafka waits for metadata it never gets, without raising).
    assert await describe_errors(trainer, [f"round.assigned.{other}"]) == [
        TopicAuthorizationFailedError.errno
    ]
    assert await fetch_from_zero(trainer, f"round.assigned.{other}", group) == []
    with pytest.raises(TopicAuthorizationFailedError):  # nor write (forge) another's grants
        await send(trainer, _assignment(other))
    with pytest.raises(TopicAuthorizationFailedError):  # nor its own: only the aggregator
        await send(trainer, _assignment(mine))

    seen = await read_all(trainer, f"round.assigned.{mine}", group)
    assert [e.event_id for e in seen] == [grant.event_id]
    assert await fetch_from_zero(trainer, f"round.assigned.{mine}", group) != []


async def describe_errors(settings: FedbusSettings, topics: list[str]) -> list[int]:
    """The error code the broker answers a DescribeTopics of each topic with."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options(), client_id="it-acls")
    await admin.start()
    try:
        return [int(t["error_code"]) for t in await admin.describe_topics(topics)]
    finally:
        await admin.close()


async def fetch_from_zero(settings: FedbusSettings, topic: str, group: str) -> list[bytes]:
    """Every record value partition 0 of ``topic`` yields from offset 0 within a few seconds."""
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    got: list[bytes] = []
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)  # no ListOffsets: only the fetch itself is asked for
        for _ in range(3):
            for records in (await consumer.getmany(tp, timeout_ms=1000)).values():
                got += [r.value or b"" for r in records]
        return got
    finally:
        await consumer.stop()


def _assignment(client_id: str) -> RoundAssigned:
    key = f"jobs/j/round-1/updates/{client_id}/update"
    return RoundAssigned.create(
        source="aggregator", job_id=str(uuid.uuid4()), round=1, client_id=client_id,
        started_event_id=str(uuid.uuid4()), deadline=utc_now(), model="mlp", dataset="d",
        training=TrainingConfig(), strategy=StrategySpec(), privacy=PrivacySpec(), seed=1,
        update_url="https://minio.invalid/" + key, update_key=key, urls_expire_at=utc_now(),
    )  # fmt: skip


async def test_an_upstream_principal_may_request_and_cancel_jobs_only(
    secured: FedbusSettings,
) -> None:
    """On its own intake topics (tests/integration/test_upstream_intake.py has the rest)."""
    tenant = unique("acme")
    upstream = principal_settings(secured, create_principal(secured, "upstream", tenant))
    job_id = str(uuid.uuid4())
    cancel = JobCancelRequested.create(source="upstream", job_id=job_id, tenant=tenant,
                                       requested_by="it")  # fmt: skip
    intake = f"upstream.job.cancel.requested.{tenant}"

    async with EventWatcher(secured, [intake]) as watch:
        async with EventProducer(upstream, client_id="it-acls") as producer:
            await producer.publish_raw(intake, encode(cancel), key=job_id.encode())
        assert (await watch.wait_for(lambda e: e.event_id == cancel.event_id)).job_id == job_id
    with pytest.raises(TopicAuthorizationFailedError):
        await send(upstream, bare_completed(job_id))


async def test_a_wrong_password_gets_nothing(secured: FedbusSettings) -> None:
    guessed = secured.model_copy(
        update={"kafka_sasl_username": "svc-orchestration", "kafka_sasl_password": SecretStr("x")}
    )

    with pytest.raises(KafkaError):
        await send(guessed, bare_completed())


def test_a_job_runs_end_to_end_with_every_process_as_its_own_principal(
    secured: FedbusSettings, tmp_path: Path
) -> None:
    """deploy/local/demo.py: five services and three trainers, each with its own principal."""
    spec = (REPO / "examples" / "demo-mnist.yaml").read_text()
    for old, new in [("rounds: 20", "rounds: 2"), ("clients_per_round: 10", "clients_per_round: 3"),
                     ("min_clients: 8", "min_clients: 3")]:  # fmt: skip
        spec = spec.replace(old, new)
    (tmp_path / "spec.yaml").write_text(spec)
    state = state_dir()
    env = {**os.environ, "FEDBUS_STATE_DIR": str(state),
           "FEDBUS_DEMO_GATEWAY_PORT": str(free_port()),
           "FEDBUS_DEMO_REGISTRY_PORT": str(free_port())}  # fmt: skip

    demo = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "local" / "demo.py"), "--trainers", "3",
         "--spec", str(tmp_path / "spec.yaml")],
        env=env, capture_output=True, text=True, timeout=540, check=False,
    )  # fmt: skip

    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "ended: job.completed completed" in demo.stdout
    for principal in ["svc-orchestration", "svc-aggregator", "trainer-client-000"]:
        assert (state / "principals" / f"{principal}.env").exists()
    trainer_file = (state / "principals" / "trainer-client-000.env").read_text()
    assert "FEDBUS_ENV_FILE" not in trainer_file  # it is the file the trainer was started with
    for secret in ("FEDBUS_POSTGRES_DSN", "FEDBUS_MINIO_ACCESS_KEY", "FEDBUS_MINIO_SECRET_KEY"):
        assert secret not in trainer_file
    logs = "".join(p.read_text(errors="replace") for p in (state / "logs" / "demo").glob("*.log"))
    assert "AuthorizationFailed" not in logs


async def test_every_principal_reads_the_published_keys_and_none_may_publish_one(
    secured: FedbusSettings,
) -> None:
    """`stack.py up` published the operator's and each service's key, `principal` the
    trainer's and tenant's (bound to them); those principals read the directory (no group) as
    a consumer does, and the broker refuses a key record they write."""
    client_id, tenant = unique("site"), unique("acme")
    trainer = principal_settings(secured, create_principal(secured, "trainer", client_id))
    upstream = principal_settings(secured, create_principal(secured, "upstream", tenant))

    for reader in (trainer, upstream):
        directory = KafkaKeyDirectory(reader, load_topics())
        await directory.start()
        try:
            keys = {k.principal: k for k in directory._keys.values() if not k.revoked}
        finally:
            await directory.stop()
        assert keys["admin"].role == "operator"
        for service in SERVICES:
            assert keys[f"svc-{service}"].role == service
        assert keys[f"trainer-{client_id}"].binds == {"client_id": client_id}
        assert keys[f"upstream-{tenant}"].binds == {"tenant": tenant}
        assert trainer.signing_key_file is not None
        own = load_private_key(trainer.signing_key_file)
        assert keys[f"trainer-{client_id}"].key_id == key_id_of(own)
        with pytest.raises(TopicAuthorizationFailedError):  # only the operator publishes keys
            async with asyncio.timeout(SEND_LIMIT_S):
                await publish_key(reader, own, key_record(
                    own, principal=f"trainer-{client_id}", role="operator"))  # fmt: skip
