"""round.assigned: one trainer's topic, its dead letters, and the storage helpers of its grants."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from fedbus.bus import InMemoryBus, dlq_topic
from fedbus.events import (
    PrivacySpec,
    RoundAssigned,
    StrategySpec,
    TrainingConfig,
    check_client_id,
    decode,
    encode,
    load_topics,
)
from fedbus.settings import FedbusSettings
from fedbus.storage import (
    AesGcmCipher,
    ArtifactIntegrityError,
    DecryptionError,
    InMemoryArtifactStore,
    S3ArtifactStore,
    open_sealed,
    seal,
    update_key,
)

NOW = datetime(2025, 3, 14, 12, tzinfo=UTC)


def assigned(client_id: str = "site-a") -> RoundAssigned:
    key = update_key("job-1", 2, client_id)
    return RoundAssigned.create(
        source="aggregator", job_id="job-1", round=2, client_id=client_id,
        started_event_id="s-1", deadline=NOW, model="mlp", dataset="d",
        training=TrainingConfig(), strategy=StrategySpec(), privacy=PrivacySpec(), seed=1,
        update_url="https://minio.test/fedbus/" + key, update_key=key, urls_expire_at=NOW,
    )  # fmt: skip


def test_an_assignment_travels_on_its_trainers_topic_and_round_trips() -> None:
    event = assigned("site-a")

    assert event.topic() == "round.assigned.site-a"
    assert decode(encode(event)) == event
    assert decode(encode(event, "avro")) == event


async def test_the_in_memory_bus_keeps_it_on_that_topic_only() -> None:
    bus = InMemoryBus()

    await bus.publish(assigned("site-a"))

    assert list(bus.topics) == ["round.assigned.site-a"]


def test_every_trainers_dead_letters_go_to_the_one_family_dlq() -> None:
    assert dlq_topic("round.assigned.site-a") == "round.assigned.dlq"
    assert dlq_topic("round.assigned.a.b") == "round.assigned.dlq"
    assert dlq_topic("round.started") == "round.started.dlq"
    catalog = load_topics()
    assert catalog.family_of("round.assigned.site-a") is catalog.get("round.assigned")
    assert catalog.family_of("round.assigned.dlq") is None  # a topic of its own, no member
    assert catalog.get("round.assigned.dlq").dead_letter_of == "round.assigned"


def test_an_assignment_for_another_trainer_does_not_belong_on_this_ones_topic() -> None:
    catalog = load_topics()

    assert catalog.admit(assigned("site-a"), "round.assigned.site-a").client_id == "site-a"
    with pytest.raises(ValueError, match="client_id"):
        catalog.admit(assigned("site-b"), "round.assigned.site-a")


@pytest.mark.parametrize("bad", ["dlq", "", "a/b", "a b", "-a", ".a", "x" * 101, "é"])
def test_client_ids_that_cannot_name_a_trainer_topic_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="client id"):
        check_client_id(bad)


def test_the_update_key_is_fixed_per_client_and_round() -> None:
    assert update_key("j", 3, "a") == "jobs/j/round-3/updates/a/update"


async def test_a_body_sealed_for_a_key_opens_only_for_that_key_and_reference() -> None:
    cipher = AesGcmCipher(b"k" * 32, key_id="k1")
    store = InMemoryArtifactStore(cipher)
    ref = await store.put_at(b"delta bytes", key="jobs/j/round-1/updates/a/update")

    body = store.objects[ref.object_key]
    assert body.startswith(b"FBE2")
    assert open_sealed(cipher, body, ref) == b"delta bytes"
    assert open_sealed(cipher, seal(cipher, b"delta bytes", key=ref.object_key), ref)
    moved = ref.model_copy(update={"object_key": "jobs/j/round-1/updates/b/update"})
    with pytest.raises(DecryptionError):
        open_sealed(cipher, body, moved)
    with pytest.raises(ArtifactIntegrityError):
        open_sealed(cipher, body, ref.model_copy(update={"sha256": "0" * 64}))


def test_presigned_urls_name_one_key_one_method_their_lifetime_and_the_public_host() -> None:
    settings = FedbusSettings(  # type: ignore[call-arg]
        _env_file=None, minio_endpoint="https://minio.internal:9000", minio_access_key="AK",
        minio_secret_key=SecretStr("SK"),
    )  # fmt: skip
    store = S3ArtifactStore.from_settings(settings, endpoint="https://minio.example.org")

    put = urlsplit(store.presign("put_object", "jobs/j/round-1/updates/a/update", expires_s=90))
    get = urlsplit(store.presign("get_object", "jobs/j/round-1/global/x", expires_s=90))

    assert (put.scheme, put.netloc, put.path) == (
        "https", "minio.example.org", "/fedbus/jobs/j/round-1/updates/a/update",
    )  # fmt: skip
    query = parse_qs(put.query)
    assert query["X-Amz-Expires"] == ["90"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Credential"][0].startswith("AK/")
    assert "SK" not in put.query
    assert get.path == "/fedbus/jobs/j/round-1/global/x"
    assert query["X-Amz-Signature"] != parse_qs(get.query)["X-Amz-Signature"]
