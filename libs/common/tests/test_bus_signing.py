"""Signed events as an attacker would try them: a consumer's verdict on each forged record.

Kafka is replaced by the consumer runner's fakes (tests/integration/test_signed_events.py
runs the same attacks on the real broker).
"""

from __future__ import annotations

import hashlib
import random
import struct
from pathlib import Path
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedbus.bus import ConsumerRunner, InMemoryIdempotencyStore, RetryPolicy
from fedbus.bus.codec import encode_event
from fedbus.bus.signing import (
    KEY_TOPIC,
    PROOF_HEADER,
    SIGNATURE_HEADER,
    EventSignatureError,
    KeyDirectory,
    Signer,
    generate_key,
    key_id_of,
    key_record,
    leaf_hash,
    load_private_key,
    merkle_tree,
    parse_public_key,
    public_key_b64,
    root_from_path,
    signing_input,
    write_private_key,
)
from fedbus.bus.signing import main as signing_main
from fedbus.bus.topics import catalog
from fedbus.events import (
    DeadLetter,
    Event,
    RoundCompleted,
    TrainerHeartbeat,
    TrainerStatus,
    decode,
)
from fedbus.settings import FedbusSettings

CT = [("content-type", b"application/json")]


def heartbeat(client_id: str) -> TrainerHeartbeat:
    return TrainerHeartbeat.create(
        source="trainer", job_id="", client_id=client_id, device="cpu",
        status=TrainerStatus.IDLE, capacity=1, interval_seconds=5,
    )  # fmt: skip


class Parties:
    """A root key, a directory that trusts it, and published keys for a few principals."""

    def __init__(self) -> None:
        self.root = generate_key()
        self.directory = KeyDirectory([self.root.public_key()], catalog())
        self.keys: dict[str, Ed25519PrivateKey] = {}

    def publish(
        self,
        name: str,
        role: str,
        binds: dict[str, str] | None = None,
        *,
        revoked: bool = False,
        signed_by: Ed25519PrivateKey | None = None,
    ) -> Ed25519PrivateKey:
        key = self.keys.setdefault(name, generate_key())
        event = key_record(key, principal=name, role=role, binds=binds, revoked=revoked)
        value = encode_event(event)
        headers = Signer(signed_by or self.root).sign(KEY_TOPIC, event.kafka_key(), value, CT)
        self.directory.add_record(event.kafka_key(), value, headers)
        return key


def signed(key: Ed25519PrivateKey, event: Event) -> tuple[str, bytes | None, bytes, list[Any]]:
    topic, value = event.topic(), encode_event(event)
    return topic, event.kafka_key(), value, Signer(key).sign(topic, event.kafka_key(), value, CT)


def reason(
    directory: KeyDirectory, topic: str, key: bytes | None, value: bytes, headers: Any
) -> str:
    """The verdict on one record: 'ok' or the refusal's reason."""
    try:
        signer = directory.verify_signature(topic, key, value, headers)
        directory.check_authority(signer, topic, decode(value))
    except EventSignatureError as exc:
        return exc.reason
    return "ok"


@pytest.fixture
def parties() -> Parties:
    p = Parties()
    p.publish("trainer-a", "trainer", {"client_id": "a"})
    p.publish("trainer-b", "trainer", {"client_id": "b"})
    p.publish("svc-aggregator", "aggregator")
    return p


def test_a_trainers_own_heartbeat_passes(parties: Parties) -> None:
    assert reason(parties.directory, *signed(parties.keys["trainer-a"], heartbeat("a"))) == "ok"


def test_trainer_b_cannot_speak_for_trainer_a_on_a_shared_topic(parties: Parties) -> None:
    # The broker lets B write trainer.heartbeat (its role produces it); its key is bound to b.
    forged = signed(parties.keys["trainer-b"], heartbeat("a"))

    assert reason(parties.directory, *forged) == "bound_field"


def test_a_trainer_key_cannot_sign_what_its_role_does_not_produce(parties: Parties) -> None:
    completed = RoundCompleted.model_validate_json(
        Path(__file__).parents[3].joinpath("schemas/examples/round.completed.json").read_text()
    )

    assert reason(parties.directory, *signed(parties.keys["trainer-a"], completed)) == (
        "not_a_producer"
    )
    assert reason(parties.directory, *signed(parties.keys["svc-aggregator"], completed)) == "ok"


def test_every_single_flipped_byte_is_refused(parties: Parties) -> None:
    topic, key, value, headers = signed(parties.keys["trainer-a"], heartbeat("a"))
    rng = random.Random(16)
    for _ in range(60):
        i = rng.randrange(len(value))
        tampered = value[:i] + bytes([value[i] ^ (1 << rng.randrange(8))]) + value[i + 1 :]
        assert reason(parties.directory, topic, key, tampered, headers) == "bad_signature"


def test_moving_a_signed_record_to_another_key_topic_or_content_type_breaks_it(
    parties: Parties,
) -> None:
    topic, key, value, headers = signed(parties.keys["trainer-a"], heartbeat("a"))
    avro = [("content-type", b"avro/binary"), *headers[1:]]

    assert reason(parties.directory, topic, b"b", value, headers) == "bad_signature"
    assert reason(parties.directory, "progress", key, value, headers) == "bad_signature"
    assert reason(parties.directory, topic, None, value, headers) == "bad_signature"
    assert reason(parties.directory, topic, key, value, avro) == "bad_signature"


def test_unsigned_unknown_and_doubled_signatures(parties: Parties) -> None:
    topic, key, value, headers = signed(generate_key(), heartbeat("a"))
    own = signed(parties.keys["trainer-a"], heartbeat("a"))[3]

    assert reason(parties.directory, topic, key, value, CT) == "unsigned"
    assert reason(parties.directory, topic, key, value, headers) == "unknown_key"
    second = next(h for h in own if h[0] == SIGNATURE_HEADER)
    assert reason(parties.directory, topic, key, value, [*headers, second]) == "unsigned"
    no_proof = [h for h in own if h[0] != PROOF_HEADER]
    assert (
        reason(parties.directory, *signed(parties.keys["trainer-a"], heartbeat("a"))[:3], no_proof)
        == "bad_signature"
    )


def test_a_key_record_not_signed_by_the_root_is_ignored(parties: Parties) -> None:
    rogue = parties.publish("trainer-evil", "operator", signed_by=generate_key())

    assert parties.directory.get(key_id_of(rogue)) is None
    assert reason(parties.directory, *signed(rogue, heartbeat("a"))) == "unknown_key"


def test_a_tampered_key_record_is_ignored(parties: Parties) -> None:
    key = generate_key()
    event = key_record(key, principal="trainer-c", role="trainer", binds={"client_id": "c"})
    value = encode_event(event)
    headers = Signer(parties.root).sign(KEY_TOPIC, event.kafka_key(), value, CT)
    widened = value.replace(b'"trainer"', b'"operator"')

    assert parties.directory.add_record(event.kafka_key(), widened, headers) is None
    assert parties.directory.get(key_id_of(key)) is None


def test_revocation_sticks_and_an_old_active_record_does_not_undo_it(parties: Parties) -> None:
    key = parties.keys["trainer-a"]
    record = key_record(key, principal="trainer-a", role="trainer", binds={"client_id": "a"})
    old_value = encode_event(record)
    old_headers = Signer(parties.root).sign(KEY_TOPIC, record.kafka_key(), old_value, CT)

    parties.publish("trainer-a", "trainer", {"client_id": "a"}, revoked=True)
    parties.directory.add_record(record.kafka_key(), old_value, old_headers)  # replayed

    assert reason(parties.directory, *signed(key, heartbeat("a"))) == "revoked_key"


def test_rotation_the_new_key_works_and_the_revoked_one_does_not(parties: Parties) -> None:
    old = parties.keys.pop("trainer-a")
    new = parties.publish("trainer-a", "trainer", {"client_id": "a"})
    parties.keys["trainer-a-old"] = old
    parties.publish("trainer-a-old", "trainer", {"client_id": "a"}, revoked=True)

    assert reason(parties.directory, *signed(new, heartbeat("a"))) == "ok"
    assert reason(parties.directory, *signed(old, heartbeat("a"))) == "revoked_key"


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 64, 100])
def test_every_record_of_a_batch_verifies_alone_and_only_with_its_own_proof(
    parties: Parties, size: int
) -> None:
    events = [heartbeat("a") for _ in range(size)]
    records = [(e.topic(), e.kafka_key(), encode_event(e), CT) for e in events]
    signed_headers = Signer(parties.keys["trainer-a"]).sign_batch(records)
    signatures = {dict(h)[SIGNATURE_HEADER] for h in signed_headers}

    assert len(signatures) == 1  # one Ed25519 signature for the whole batch
    for (topic, key, value, _), headers in zip(records, signed_headers, strict=True):
        assert reason(parties.directory, topic, key, value, headers) == "ok"
    # A directory that has not yet seen this batch (one that has knows each record's leaf is
    # in the signed tree, whatever proof it comes with).
    fresh = KeyDirectory([parties.root.public_key()], catalog())
    fresh._keys = parties.directory._keys
    topic, key, value, _ = records[-1]
    proof = dict(signed_headers[-1])[PROOF_HEADER]
    for index, claimed in [(size - 1, size + 1), (size, size), (0, size)]:
        forged = struct.pack(">II", index, claimed) + proof[8:]
        headers = [(k, forged if k == PROOF_HEADER else v) for k, v in signed_headers[-1]]
        if (index, claimed) != (0, 1):  # a batch of one: index 0 of 1 is the real proof
            assert reason(fresh, topic, key, value, headers) == "bad_signature"
    if size > 1:  # a record with its neighbour's proof does not verify
        topic, key, value, _ = records[0]
        assert reason(fresh, topic, key, value, signed_headers[1]) == "bad_signature"
        # nor does a changed record, once its batch is known
        changed = value.replace(b'"cpu"', b'"gpu"')
        assert reason(parties.directory, topic, key, changed, signed_headers[0]) == "bad_signature"


def rfc6962_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 2.1's MTH, as the RFC defines it (split at the largest power of two below n)."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + rfc6962_root(leaves[:k]) + rfc6962_root(leaves[k:])).digest()


def test_the_tree_is_rfc_6962s_and_every_audit_path_leads_to_its_root() -> None:
    for n in range(1, 130):
        leaves = [hashlib.sha256(n.to_bytes(2) + i.to_bytes(2)).digest() for i in range(n)]
        root, paths = merkle_tree(leaves)
        assert root == rfc6962_root(leaves)
        assert [root_from_path(i, n, leaves[i], p) for i, p in enumerate(paths)] == [root] * n


def test_merkle_proofs_match_rfc_6962() -> None:
    leaves = [bytes([i]) * 32 for i in range(7)]
    root, paths = merkle_tree(leaves)
    for i, path in enumerate(paths):
        assert root_from_path(i, 7, leaves[i], path) == root
    assert root_from_path(7, 7, leaves[0], paths[0]) is None
    # RFC 6962 2.1: MTH of two leaves is SHA-256(0x01 || l0 || l1)
    import hashlib

    assert merkle_tree(leaves[:2])[0] == hashlib.sha256(b"\x01" + leaves[0] + leaves[1]).digest()
    assert leaf_hash("t", b"k", b"v", CT) != leaf_hash("t", b"k", b"w", CT)


def test_the_signing_input_is_unambiguous() -> None:
    # Moving a byte from the key into the topic (or value) changes what is signed.
    assert signing_input("ab", b"c", b"v", CT) != signing_input("a", b"bc", b"v", CT)
    assert signing_input("t", None, b"v", CT) != signing_input("t", b"", b"v", CT)
    assert signing_input("t", b"k", b"v", []) != signing_input(
        "t", b"k", b"v", [("content-type", b"")]
    )


def test_key_files_round_trip_private_to_their_owner(tmp_path: Path) -> None:
    key = generate_key()
    path = tmp_path / "keys" / "svc.pem"
    write_private_key(path, key)

    assert path.stat().st_mode & 0o777 == 0o600
    assert key_id_of(load_private_key(path)) == key_id_of(key)
    assert key_id_of(parse_public_key(public_key_b64(key))) == key_id_of(key)
    path.write_text("not a key")
    with pytest.raises(ValueError, match=str(path)):
        load_private_key(path)
    with pytest.raises(ValueError, match="not 32"):
        parse_public_key("AAAA")


# The consumer runner applies the verdict: a refused record is dead-lettered with its reason.


class Publisher:
    def __init__(self) -> None:
        self.raw: list[tuple[str, bytes]] = []

    async def publish(self, event: Event) -> None:
        return None

    async def publish_many(self, events: Any) -> None:
        return None

    async def publish_raw(self, topic: str, value: bytes, *, key: Any, headers: Any) -> None:
        self.raw.append((topic, value))


def as_record(
    topic: str, key: bytes | None, value: bytes, headers: Any
) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic, partition=0, offset=3, timestamp=0, timestamp_type=0, key=key,
        value=value, checksum=None, serialized_key_size=0, serialized_value_size=len(value),
        headers=headers,
    )  # fmt: skip


def heartbeat_runner(
    directory: KeyDirectory | None, publisher: Publisher, seen: list[Event], *, required: bool
) -> ConsumerRunner:
    async def handle(event: Event) -> None:
        seen.append(event)

    return ConsumerRunner(
        FedbusSettings(_env_file=None),  # type: ignore[call-arg]
        group_id="orchestration", handlers={TrainerHeartbeat: handle}, producer=publisher,
        idempotency=InMemoryIdempotencyStore(), retry=RetryPolicy(attempts=1),
        keys=directory, require_signatures=required,
    )  # fmt: skip


async def test_the_runner_dead_letters_a_forged_heartbeat_and_handles_the_real_one(
    parties: Parties,
) -> None:
    publisher, seen = Publisher(), list[Event]()
    runner = heartbeat_runner(parties.directory, publisher, seen, required=True)

    forged = await runner.handle_record(
        as_record(*signed(parties.keys["trainer-b"], heartbeat("a")))
    )
    unsigned = await runner.handle_record(
        as_record("trainer.heartbeat", b"a", encode_event(heartbeat("a")), CT)
    )
    real = await runner.handle_record(as_record(*signed(parties.keys["trainer-a"], heartbeat("a"))))

    assert (forged, unsigned, real) == ("dead_lettered", "dead_lettered", "handled")
    assert [getattr(e, "client_id", None) for e in seen] == ["a"]
    letters = [decode(v) for t, v in publisher.raw]
    assert {t for t, _ in publisher.raw} == {"trainer.heartbeat.dlq"}
    assert all(isinstance(d, DeadLetter) for d in letters)
    messages = [d.error_message for d in letters if isinstance(d, DeadLetter)]
    assert messages[0].startswith("bound_field: trainer-b's key is bound to client_id 'b'")
    assert messages[1].startswith("unsigned: signatures are required")


async def test_in_development_an_unsigned_record_passes_but_a_bad_signature_never_does(
    parties: Parties,
) -> None:
    publisher, seen = Publisher(), list[Event]()
    runner = heartbeat_runner(parties.directory, publisher, seen, required=False)
    topic, key, value, headers = signed(parties.keys["trainer-a"], heartbeat("a"))

    unsigned = await runner.handle_record(as_record(topic, key, value, CT))
    tampered = await runner.handle_record(
        as_record(topic, key, value.replace(b'"a"', b'"b"'), headers)
    )

    assert (unsigned, tampered) == ("handled", "dead_lettered")


def test_the_key_tool_prints_a_public_key_and_takes_one_instead_of_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "site.pem"
    root_path = tmp_path / "root.pem"
    assert signing_main(["root", "--key", str(root_path)]) == 0
    root_public = capsys.readouterr().out.strip()
    write_private_key(path, generate_key())

    assert signing_main(["public", "--key", str(path)]) == 0
    assert capsys.readouterr().out.strip() == public_key_b64(load_private_key(path))
    assert root_public == public_key_b64(load_private_key(root_path))
    with pytest.raises(SystemExit):  # a key file or a public key, not both
        signing_main(["issue", "--root", str(root_path), "--key", str(path), "--public-key",
                      root_public, "--principal", "p", "--role", "trainer"])  # fmt: skip


def test_review_findings_a_signer_cannot_evade_its_binding_or_key(parties: Parties) -> None:
    # A key bound to a field the event lacks (a typo'd bind) is refused, not ignored.
    typo = parties.publish("trainer-t", "trainer", {"clientid": "t"})
    assert reason(parties.directory, *signed(typo, heartbeat("victim"))) == "bound_field"
    # Two content-type headers: which one was signed? Refused.
    topic, key, value, headers = signed(parties.keys["trainer-a"], heartbeat("a"))
    doubled = [("content-type", b"avro/binary"), *headers]
    assert reason(parties.directory, topic, key, value, doubled) == "bad_signature"


def test_a_revocation_has_its_own_compaction_key_so_a_reissue_cannot_compact_it_away(
    parties: Parties,
) -> None:
    key = parties.keys["trainer-a"]
    active = key_record(key, principal="trainer-a", role="trainer", binds={"client_id": "a"})
    revoked = key_record(key, principal="trainer-a", role="trainer", binds={"client_id": "a"},
                         revoked=True)  # fmt: skip

    assert active.kafka_key() == key_id_of(key).encode()
    assert revoked.kafka_key() == b"revoked:" + key_id_of(key).encode()
    # after compaction only the latest record per Kafka key is left: the revocation, then a
    # re-issued "active" record; a consumer starting then still refuses the key
    fresh = Parties()
    fresh.root = parties.root
    fresh.directory = KeyDirectory([parties.root.public_key()], catalog())
    for event in (revoked, active):
        value = encode_event(event)
        headers = Signer(parties.root).sign(KEY_TOPIC, event.kafka_key(), value, CT)
        fresh.directory.add_record(event.kafka_key(), value, headers)
    assert reason(fresh.directory, *signed(key, heartbeat("a"))) == "revoked_key"


async def test_the_runner_refuses_a_signed_record_under_another_partys_kafka_key(
    parties: Parties,
) -> None:
    publisher, seen = Publisher(), list[Event]()
    runner = heartbeat_runner(parties.directory, publisher, seen, required=True)
    topic, _, value, headers = signed(parties.keys["trainer-b"], heartbeat("b"))
    # B signs its own heartbeat but sends it keyed "a": compaction would drop A's latest.
    headers = Signer(parties.keys["trainer-b"]).sign(topic, b"a", value, CT)

    outcome = await runner.handle_record(as_record(topic, b"a", value, headers))

    assert outcome == "dead_lettered"
    [(_, letter)] = publisher.raw
    dead = decode(letter)
    assert isinstance(dead, DeadLetter)
    assert dead.error_message.startswith("wrong_key:")
    assert seen == []
