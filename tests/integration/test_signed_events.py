"""Signed events on the real broker: a trainer cannot speak for another, as an attacker tries it.

The broker lets every trainer write ``trainer.heartbeat`` (its role produces it), so on the
wire trainer B can claim to be trainer A. Orchestration, running as its own principal with
signatures required (the local stack's default), checks each record's Ed25519 signature
against the keys the operator published on ``key.published`` and the key's binding
(``client_id``), and dead-letters what fails with the reason. The user-visible effect: a
forged heartbeat does not make orchestration count a trainer as live, a genuine one does.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from fedbus.bus import EventProducer
from fedbus.bus.codec import encode_event
from fedbus.bus.signing import Signer, generate_key, load_private_key
from fedbus.events import (
    DeadLetter,
    DeclineReason,
    Event,
    JobAccepted,
    JobRejected,
    JobRequested,
    JobSpec,
    RoundCompleted,
    RoundDeclined,
    TrainerHeartbeat,
    TrainerStatus,
    UpdateSubmitted,
    schema_dir,
)
from fedbus.settings import FedbusSettings

from .announce import announced
from .harness import (
    REPO,
    EventWatcher,
    ServiceProcess,
    create_principal,
    fresh_group,
    principal_settings,
    state_dir,
    unique,
)
from .test_kafka_acls import secured
from .test_orchestration_service import _wait_ready

__all__ = ["secured"]

LIMIT_S = 90
CT = [("content-type", b"application/json")]


def heartbeat(client_id: str, dataset: str) -> TrainerHeartbeat:
    return TrainerHeartbeat.create(
        source="trainer", job_id="", client_id=client_id, device="cpu",
        **announced(dataset, 500), status=TrainerStatus.IDLE,
        capacity=1, interval_seconds=30,
    )  # fmt: skip


def request(dataset: str) -> JobRequested:
    """The documented example request, for one client holding ``dataset``."""
    example = json.loads((schema_dir() / "examples" / "job.requested.json").read_text())
    spec = {**example["spec"], "dataset": dataset, "min_clients": 1, "clients_per_round": 1,
            "rounds": 1}  # fmt: skip
    return JobRequested.create(source="gateway", job_id=str(uuid.uuid4()), tenant="acme",
                               spec=JobSpec.model_validate(spec))  # fmt: skip


async def publish(settings: FedbusSettings, event: Event) -> None:
    """Publish as ``settings``' principal, signed with its own key (EventProducer signs)."""
    async with EventProducer(settings, client_id="it-signed") as producer:
        await producer.publish(event)


async def publish_raw(
    settings: FedbusSettings, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
) -> None:
    """Put exactly these bytes and headers on ``topic``, as ``settings``' Kafka principal."""
    producer = AIOKafkaProducer(**settings.kafka_client_options())
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


def signing_tool(*args: str) -> None:
    """``python -m fedbus.bus.signing`` as the operator (the stack's env file, its root key)."""
    subprocess.run([sys.executable, "-m", "fedbus.bus.signing", *args], cwd=REPO, check=True,
                   capture_output=True, timeout=60)  # fmt: skip


def letter_for(event_id: str, reason: str) -> Callable[[Event], bool]:
    """A matcher: the dead letter of the record with ``event_id``, refused for ``reason``."""

    def match(e: Event) -> bool:
        if not isinstance(e, DeadLetter):
            return False
        original = json.loads(e.original_value())
        return bool(original.get("event_id") == event_id and e.error_message.startswith(reason))

    return match


def answers(job_id: str) -> Callable[[Event], bool]:
    return lambda e: e.job_id == job_id


@pytest.fixture
def orchestration(secured: FedbusSettings, tmp_path: Path) -> Iterator[ServiceProcess]:
    """Orchestration as ``svc-orchestration``, reading key.published again every second."""
    group = unique("orchestration-signed")
    asyncio.run(fresh_group(secured, group, ["trainer.heartbeat", "job.requested"]))
    proc = ServiceProcess.start(
        "orchestration", "fedbus_orchestration", log_dir=tmp_path, principal="svc-orchestration",
        env={"FEDBUS_CONSUMER_GROUP": group, "FEDBUS_KEYS_REFRESH_S": "1"},
    )  # fmt: skip
    try:
        _wait_ready(proc)
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def trainers(secured: FedbusSettings) -> dict[str, FedbusSettings]:
    """Two trainer principals, each with its own Kafka credentials and signing key."""
    if not secured.signatures_required:
        pytest.skip("the stack does not require signatures (FEDBUS_REQUIRE_SIGNATURES)")
    out = {}
    for name in ("a", "b"):
        client = unique(f"site-{name}")
        out[name] = principal_settings(secured, create_principal(secured, "trainer", client))
        out[name + "_id"] = client  # type: ignore[assignment]
    return out


async def test_a_forged_heartbeat_is_refused_and_does_not_make_a_trainer_live(
    secured: FedbusSettings, trainers: dict[str, FedbusSettings], orchestration: ServiceProcess
) -> None:
    a, b, a_id = trainers["a"], trainers["b"], str(trainers["a_id"])
    dataset = unique("ds")
    topics = ["trainer.heartbeat.dlq", "job.accepted", "job.rejected"]
    async with EventWatcher(secured, topics) as watch:
        forged = heartbeat(a_id, dataset)  # B, with its own principal and key, claims to be A
        await publish(b, forged)
        letter = await watch.wait_for(letter_for(forged.event_id, "bound_field"), limit_s=LIMIT_S)

        first = request(dataset)
        await publish(secured, first)
        refused = await watch.wait_for(lambda e: e.job_id == first.job_id, limit_s=LIMIT_S)

        await publish(a, heartbeat(a_id, dataset))  # A itself
        accepted: Event | None = None
        while accepted is None:  # until orchestration has read A's heartbeat
            again = request(dataset)
            await publish(secured, again)
            answer = await watch.wait_for(answers(again.job_id), limit_s=LIMIT_S)
            accepted = answer if isinstance(answer, JobAccepted) else None
            assert len([e for e in watch.seen if isinstance(e, JobRejected)]) < 20

    assert isinstance(letter, DeadLetter)
    assert a_id in letter.error_message
    assert "client_id" in letter.error_message
    assert isinstance(refused, JobRejected)  # the forged heartbeat counted for nothing
    assert isinstance(accepted, JobAccepted)


async def test_forged_unsigned_tampered_unknown_revoked_and_out_of_role_are_dead_lettered(
    secured: FedbusSettings, trainers: dict[str, FedbusSettings], orchestration: ServiceProcess
) -> None:
    a, a_id = trainers["a"], str(trainers["a_id"])
    assert a.signing_key_file is not None
    a_key = load_private_key(a.signing_key_file)
    dataset = unique("ds")

    def signed(event: Event, key: object = a_key) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        value, k = encode_event(event), event.kafka_key() or b""
        return k, value, Signer(key).sign(event.topic(), k, value, CT)  # type: ignore[arg-type]

    dlqs = ["trainer.heartbeat.dlq", "round.completed.dlq", "round.declined.dlq"]
    async with EventWatcher(secured, dlqs) as watch:
        # B declines a round in A's name (a decline takes a client out of a job).
        decline = RoundDeclined.create(
            source="trainer", job_id=str(uuid.uuid4()), round=1, client_id=a_id,
            started_event_id=str(uuid.uuid4()),
            reasons=[DeclineReason(code="epsilon_too_large", message="forged")],
        )  # fmt: skip
        await publish(trainers["b"], decline)

        unsigned = heartbeat(a_id, dataset)
        await publish_raw(a, "trainer.heartbeat", a_id.encode(), encode_event(unsigned), CT)

        tampered = heartbeat(a_id, dataset)
        key, value, headers = signed(tampered)
        flipped = value.replace(b'"num_samples":500', b'"num_samples":900')
        await publish_raw(a, "trainer.heartbeat", key, flipped, headers)

        stranger = heartbeat(a_id, dataset)  # a key the operator never published
        await publish_raw(a, "trainer.heartbeat", *signed(stranger, generate_key()))

        # B's own, honestly signed heartbeat sent under A's Kafka key: on the compacted
        # topic it would replace A's latest heartbeat.
        b_key = load_private_key(trainers["b"].signing_key_file or Path())
        squatter = heartbeat(str(trainers["b_id"]), dataset)
        value = encode_event(squatter)
        over_a = Signer(b_key).sign("trainer.heartbeat", a_id.encode(), value, CT)
        await publish_raw(trainers["b"], "trainer.heartbeat", a_id.encode(), value, over_a)

        # A's key on round.completed (the aggregator's): out of its role. The broker would
        # refuse A's principal, so it rides on a stolen super-user credential.
        example = json.loads((schema_dir() / "examples" / "round.completed.json").read_text())
        completed = RoundCompleted.model_validate({**example, "event_id": str(uuid.uuid4())})
        await publish_raw(secured, "round.completed", *signed(completed))

        for event_id, reason in [
            (decline.event_id, "bound_field"),
            (unsigned.event_id, "unsigned"),
            (tampered.event_id, "bad_signature"),
            (stranger.event_id, "unknown_key"),
            (completed.event_id, "not_a_producer"),
            (squatter.event_id, "wrong_key"),
        ]:
            await watch.wait_for(letter_for(event_id, reason), limit_s=LIMIT_S)

        # The operator revokes A's key: within FEDBUS_KEYS_REFRESH_S (1 s here) orchestration
        # refuses what it signs.
        root = state_dir() / "keys" / "root.pem"
        signing_tool("revoke", "--root", str(root), "--key", str(a.signing_key_file),
                     "--principal", f"trainer-{a_id}", "--role", "trainer",
                     "--bind", f"client_id={a_id}", "--reason", "test")  # fmt: skip
        revoked: Event | None = None
        for _ in range(30):
            after = heartbeat(a_id, dataset)
            await publish(a, after)
            try:
                revoked = await watch.wait_for(letter_for(after.event_id, "revoked_key"), limit_s=2)
                break
            except TimeoutError:
                continue

    assert isinstance(revoked, DeadLetter)
    assert f"trainer-{a_id}" in revoked.error_message


async def test_the_privacy_report_leaves_out_an_update_a_trainer_sent_in_anothers_name(
    secured: FedbusSettings, trainers: dict[str, FedbusSettings]
) -> None:
    """``fedbus privacy report`` recomputes epsilon from ``update.submitted``, which every
    trainer may write: B's update claiming to be A's is left out and named."""
    a_id, job_id = str(trainers["a_id"]), str(uuid.uuid4())
    example = json.loads((schema_dir() / "examples" / "update.submitted.json").read_text())
    forged = UpdateSubmitted.model_validate(
        {**example, "event_id": str(uuid.uuid4()), "job_id": job_id, "client_id": a_id}
    )
    await publish(trainers["b"], forged)

    fedbus = str(Path(sys.executable).with_name("fedbus"))
    done = await asyncio.to_thread(
        subprocess.run, [fedbus, "privacy", "report", "--job", job_id], cwd=REPO,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert done.returncode == 1
    [line] = [x for x in done.stderr.splitlines() if "left out" in x]
    assert "update.submitted[" in line
    assert "bound_field" in line
    assert a_id in line
