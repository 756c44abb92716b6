"""Artifacts at rest: the FBE2 envelope with a key id, the keyring, rotation, key settings."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from fedbus.bus.signing import generate_key, public_key_b64
from fedbus.events import ModelRef
from fedbus.settings import FedbusSettings, InsecureSettingsError
from fedbus.storage import (
    AesGcmCipher,
    ArtifactKeyError,
    DecryptionError,
    InMemoryArtifactStore,
    S3ArtifactStore,
    artifact_cipher,
)

K1, K2, K3 = os.urandom(32), os.urandom(16), os.urandom(24)
WEIGHTS = b"the global model's weights, which only key holders may read"


@pytest.fixture(autouse=True)
def _no_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The integration conftest may have set a stack key in this process's environment.
    for name in ("FEDBUS_ARTIFACT_KEYS", "FEDBUS_ARTIFACT_KEYS_FILE", "FEDBUS_ARTIFACT_KEY_ID"):
        monkeypatch.delenv(name, raising=False)


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def _settings(**values: Any) -> FedbusSettings:
    return FedbusSettings(_env_file=None, **values)  # type: ignore[call-arg]


def _production(**values: Any) -> FedbusSettings:
    return _settings(
        env="production",
        kafka_security_protocol="SASL_SSL",
        minio_endpoint="https://minio.example",
        minio_secret_key="s3cret",
        postgres_dsn="postgresql://u:p@db/fedbus",
        signing_key_file="/run/secrets/fedbus-signing/key.pem",
        root_public_keys=public_key_b64(generate_key()),
        **values,
    )


async def test_an_fbe2_artifact_names_its_key_and_reads_back() -> None:
    store = InMemoryArtifactStore(AesGcmCipher.from_keys({"k1": K1}, current="k1"))

    ref = await store.put_bytes(WEIGHTS, prefix="jobs/j/round-1/global")
    body = store.objects[ref.object_key]

    assert body.startswith(b"FBE2\x02k1")
    assert WEIGHTS not in body
    assert WEIGHTS[:16] not in body
    assert await store.get_bytes(ref) == WEIGHTS


async def test_a_key_id_the_reader_does_not_hold_is_refused_by_name() -> None:
    writer = InMemoryArtifactStore(AesGcmCipher.from_keys({"k9": K1}, current="k9"))
    ref = await writer.put_bytes(WEIGHTS, prefix="p")
    reader = InMemoryArtifactStore(AesGcmCipher.from_keys({"k1": K1}, current="k1"))
    reader.objects = dict(writer.objects)

    with pytest.raises(DecryptionError, match=r"key id 'k9'.*not among the keys held"):
        await reader.get_bytes(ref)


async def test_the_same_key_id_with_another_key_is_refused() -> None:
    writer = InMemoryArtifactStore(AesGcmCipher(K1, key_id="k1"))
    ref = await writer.put_bytes(WEIGHTS, prefix="p")
    reader = InMemoryArtifactStore(AesGcmCipher(os.urandom(32), key_id="k1"))
    reader.objects = dict(writer.objects)

    with pytest.raises(DecryptionError, match="wrong key for key id 'k1'"):
        await reader.get_bytes(ref)


def test_every_tampered_byte_is_refused() -> None:
    cipher = AesGcmCipher.from_keys({"k1": K1}, current="k1")
    body = cipher.encrypt(WEIGHTS, associated=b"jobs/j/round-1/global/ab")

    for position in range(len(body)):
        tampered = bytearray(body)
        tampered[position] ^= 0x01
        with pytest.raises(DecryptionError):
            cipher.decrypt(bytes(tampered), associated=b"jobs/j/round-1/global/ab")
    with pytest.raises(DecryptionError, match="truncated"):
        cipher.decrypt(body[:20], associated=b"jobs/j/round-1/global/ab")


def test_a_header_relabelled_with_another_held_key_id_is_refused() -> None:
    # Both keys are held: only the header's binding into the tag stops the relabelling.
    cipher = AesGcmCipher.from_keys({"k1": K1, "k2": K1}, current="k1")
    body = cipher.encrypt(WEIGHTS, associated=b"obj")

    relabelled = body.replace(b"FBE2\x02k1", b"FBE2\x02k2", 1)

    assert relabelled != body
    with pytest.raises(DecryptionError, match="authentication failed"):
        cipher.decrypt(relabelled, associated=b"obj")


async def test_an_object_copied_to_another_key_is_refused() -> None:
    store = InMemoryArtifactStore(AesGcmCipher(K1, key_id="k1"))
    ref = await store.put_bytes(WEIGHTS, prefix="jobs/a/round-1/global")
    # Someone with write access to the bucket puts job a's model where job b's is read.
    moved = ModelRef(
        object_key=ref.object_key.replace("jobs/a", "jobs/b"),
        size_bytes=ref.size_bytes,
        sha256=ref.sha256,
    )
    store.objects[moved.object_key] = store.objects[ref.object_key]

    with pytest.raises(DecryptionError, match="authentication failed"):
        await store.get_bytes(moved)


async def test_after_rotation_old_and_new_artifacts_both_read() -> None:
    before = InMemoryArtifactStore(AesGcmCipher.from_keys({"k1": K1}, current="k1"))
    old = await before.put_bytes(b"round 1", prefix="p")
    after = InMemoryArtifactStore(AesGcmCipher.from_keys({"k1": K1, "k2": K2}, current="k2"))
    after.objects = before.objects
    new = await after.put_bytes(b"round 2", prefix="p")

    assert after.objects[old.object_key].startswith(b"FBE2\x02k1")
    assert after.objects[new.object_key].startswith(b"FBE2\x02k2")
    assert await after.get_bytes(old) == b"round 1"
    assert await after.get_bytes(new) == b"round 2"
    retired = InMemoryArtifactStore(AesGcmCipher.from_keys({"k2": K2}, current="k2"))
    retired.objects = after.objects
    with pytest.raises(DecryptionError, match="'k1'"):
        await retired.get_bytes(old)


# Written by AesGcmCipher before key ids (FBE1 | nonce | ciphertext+tag, the object key as
# associated data) with the key bytes(range(200, 232)).
LEGACY_FBE1 = bytes.fromhex(
    "46424531a9b215f3328a6203f0e89cd3fcd9d1ebe568a453b9173ff82e847b9a05f70cea95f25f77f0fe8b"
    "69791b905bdf13bce995a32fa87e770c11992d91c8"
)
# The executor's checkpoint envelope (FBENC1, the magic as associated data), key bytes(range(32)).
LEGACY_FBENC1_32 = bytes.fromhex(
    "4642454e4331bfd4d3c6fdb63f74c01e2a4b9cee3f528003c3afa709884a0bad5f575d29ecf4f81c088fdf"
    "81a8d4eeb2523b7ca9b0e04367546066e1fab64c003301abaaa7c1985961c6d0ed74c95c835bba4057e6"
    "3deb2f94a773"
)


def test_fbe1_and_fbenc1_envelopes_read_with_the_key_that_wrote_them_in_a_ring() -> None:
    ring = AesGcmCipher.from_keys(
        {"new": K1, "fbe1": bytes(range(200, 232)), "fbenc1": bytes(range(32))}, current="new"
    )

    fbe1 = ring.decrypt(LEGACY_FBE1, associated=b"jobs/j1/round-1/global/ab")
    fbenc1 = ring.decrypt(LEGACY_FBENC1_32, associated=b"ignored")

    assert fbe1 == b"an FBE1 artifact, before key ids"
    assert fbenc1 == b"written by fedbus_executor.crypto before the one envelope"
    with pytest.raises(DecryptionError):
        ring.decrypt(LEGACY_FBE1, associated=b"jobs/j2/round-1/global/ab")
    with pytest.raises(DecryptionError):
        AesGcmCipher(K1).decrypt(LEGACY_FBE1, associated=b"jobs/j1/round-1/global/ab")


def test_keys_from_the_setting_with_a_current_id() -> None:
    settings = _settings(artifact_keys=f"k1:{_b64(K1)}, k2:{_b64(K2)}", artifact_key_id="k2")

    cipher = artifact_cipher(settings)

    assert cipher is not None
    assert cipher.current_key_id == "k2"
    assert set(cipher.key_ids) == {"k1", "k2"}
    assert cipher.encrypt(b"x", associated=b"o").startswith(b"FBE2\x02k2")
    assert _b64(K1) not in repr(cipher)
    assert _b64(K1) not in repr(settings)


def test_keys_from_a_file_of_lines(tmp_path: Path) -> None:
    keys = tmp_path / "artifact-keys"
    keys.write_text(f"# rotated 2026-12\nk1: {_b64(K1)}\n\nk2: {_b64(K2)}\n")

    cipher = artifact_cipher(_settings(artifact_keys_file=keys, artifact_key_id="k1"))

    assert cipher is not None
    assert set(cipher.key_ids) == {"k1", "k2"}
    assert cipher.current_key_id == "k1"


def test_keys_from_a_directory_mounted_like_a_kubernetes_secret(tmp_path: Path) -> None:
    # kubelet mounts each key as a symlink into a timestamped directory behind ..data.
    stamped = tmp_path / "..2026_12_07_13_00_00.123"
    stamped.mkdir()
    (tmp_path / "..data").symlink_to(stamped.name)
    for key_id, key in {"k1": K1, "k3": K3}.items():
        (stamped / key_id).write_text(_b64(key) + "\n")
        (tmp_path / key_id).symlink_to(Path("..data") / key_id)

    cipher = artifact_cipher(_settings(artifact_keys_file=tmp_path, artifact_key_id="k3"))

    assert cipher is not None
    assert sorted(cipher.key_ids) == ["k1", "k3"]
    assert cipher.decrypt(cipher.encrypt(b"x", associated=b"o"), associated=b"o") == b"x"


def test_one_key_is_current_without_an_id() -> None:
    cipher = artifact_cipher(_settings(artifact_keys=f"only:{_b64(K1)}"))

    assert cipher is not None
    assert cipher.current_key_id == "only"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"artifact_keys": f"k1:{_b64(K1)},k2:{_b64(K2)}"}, "FEDBUS_ARTIFACT_KEY_ID must name"),
        ({"artifact_keys": f"k1:{_b64(K1)}", "artifact_key_id": "k2"}, "'k2', which is not"),
        ({"artifact_keys": _b64(K1)}, "not 'id:base64key'"),
        ({"artifact_keys": "k1:not base64!"}, "key 'k1' is not valid base64"),
        ({"artifact_keys": f"k1:{_b64(os.urandom(31))}"}, "31 bytes"),
        ({"artifact_keys": f"bad id:{_b64(K1)}"}, "a key id is"),
        ({"artifact_keys": f"k1:{_b64(K1)},k1:{_b64(K2)}"}, "given twice"),
    ],
)
def test_malformed_key_settings_are_refused_without_showing_a_key(
    values: dict[str, str], message: str
) -> None:
    with pytest.raises(ArtifactKeyError, match=message) as caught:
        artifact_cipher(_settings(**values))

    for key in (K1, K2):
        assert _b64(key) not in str(caught.value)


def test_a_missing_keys_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ArtifactKeyError, match="FEDBUS_ARTIFACT_KEYS_FILE"):
        artifact_cipher(_settings(artifact_keys_file=tmp_path / "absent"))


def test_development_without_keys_stores_plaintext() -> None:
    assert artifact_cipher(_settings(env="development")) is None


def test_production_without_keys_refuses_to_build_a_store() -> None:
    settings = _production()

    with pytest.raises(InsecureSettingsError, match="FEDBUS_ARTIFACT_KEYS"):
        S3ArtifactStore.from_settings(settings)


def test_production_with_keys_builds_an_encrypting_store() -> None:
    store = S3ArtifactStore.from_settings(_production(artifact_keys=f"k1:{_b64(K1)}"))

    assert store._cipher is not None
    assert store._cipher.current_key_id == "k1"
