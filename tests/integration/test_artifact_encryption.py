"""Artifacts at rest in the real MinIO: ciphertext only, key rotation, production refusal.

What is checked is what an operator with the MinIO root keys (or a stolen disk) would see:
the raw objects, read with boto3 and through presigned URLs, not the store's own view.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from fedbus.bus.signing import generate_key, public_key_b64, write_private_key
from fedbus.events import ModelRef
from fedbus.settings import FedbusSettings
from fedbus.storage import AesGcmCipher, DecryptionError, S3ArtifactStore, tensors_to_bytes

from .harness import ServiceProcess

K1, K2 = os.urandom(32), os.urandom(32)


def _store(settings: FedbusSettings, keys: dict[str, bytes], current: str) -> S3ArtifactStore:
    base = S3ArtifactStore.from_settings(settings)
    return S3ArtifactStore(base._s3, base.bucket, AesGcmCipher.from_keys(keys, current=current))


def _raw(store: S3ArtifactStore, key: str) -> bytes:
    return bytes(store._s3.get_object(Bucket=store.bucket, Key=key)["Body"].read())


def _download(url: str, settings: FedbusSettings) -> bytes:
    """GET a presigned link, checking MinIO's certificate against the stack's CA."""
    with urllib.request.urlopen(url, context=settings.minio_ssl_context()) as response:
        return bytes(response.read())


async def test_minio_holds_only_ciphertext_which_reads_back_equal(
    settings: FedbusSettings,
) -> None:
    store = _store(settings, {"k1": K1}, "k1")
    await store.ensure_bucket()
    # Recognisable weights: a run of distinct float32 values, 64 KiB of them.
    tensors = {"layer.weight": np.arange(16384, dtype=np.float32).reshape(128, 128) / 7}
    plain = tensors_to_bytes(tensors)

    ref = await store.put_tensors(tensors, prefix=f"test/{uuid.uuid4().hex[:8]}/global")
    raw = _raw(store, ref.object_key)
    via_url = await asyncio.to_thread(_download, store.presigned_url(ref, expires_s=60), settings)

    assert raw.startswith(b"FBE2\x02k1")
    assert via_url == raw  # a presigned link serves the ciphertext too
    assert b"layer.weight" not in raw
    assert b"float32" not in raw.lower()
    weights = tensors["layer.weight"].tobytes()
    assert not any(weights[i : i + 16] in raw for i in range(0, len(weights), 4096))
    assert len(raw) == len(plain) + 4 + 1 + 2 + 12 + 16  # magic, id length, id, nonce, tag
    back = await store.get_tensors(ref)
    np.testing.assert_array_equal(back["layer.weight"], tensors["layer.weight"])


async def test_an_object_copied_under_another_key_in_minio_is_refused(
    settings: FedbusSettings,
) -> None:
    store = _store(settings, {"k1": K1}, "k1")
    await store.ensure_bucket()
    ref = await store.put_bytes(b"job a's model" * 100, prefix=f"test/{uuid.uuid4().hex[:8]}/a")
    moved = ModelRef(
        object_key=ref.object_key.replace("/a/", "/b/"),
        size_bytes=ref.size_bytes,
        sha256=ref.sha256,
    )
    store._s3.copy_object(
        Bucket=store.bucket,
        Key=moved.object_key,
        CopySource={"Bucket": store.bucket, "Key": ref.object_key},
    )

    with pytest.raises(DecryptionError, match="authentication failed"):
        await store.get_bytes(moved)


async def test_after_rotation_old_objects_still_read_and_new_ones_use_the_new_key(
    settings: FedbusSettings,
) -> None:
    prefix = f"test/{uuid.uuid4().hex[:8]}"
    before = _store(settings, {"k1": K1}, "k1")
    await before.ensure_bucket()
    old = await before.put_bytes(b"written under k1" * 64, prefix=f"{prefix}/round-1")

    rotated = _store(settings, {"k1": K1, "k2": K2}, "k2")
    new = await rotated.put_bytes(b"written under k2" * 64, prefix=f"{prefix}/round-2")

    assert _raw(rotated, old.object_key).startswith(b"FBE2\x02k1")
    assert _raw(rotated, new.object_key).startswith(b"FBE2\x02k2")
    assert await rotated.get_bytes(old) == b"written under k1" * 64
    assert await rotated.get_bytes(new) == b"written under k2" * 64
    retired = _store(settings, {"k2": K2}, "k2")  # k1 dropped too early
    with pytest.raises(DecryptionError, match="'k1'"):
        await retired.get_bytes(old)


@pytest.mark.parametrize("module", ["fedbus_registry", "fedbus_aggregator"])
def test_a_service_in_production_without_artifact_keys_refuses_to_start(
    tmp_path: Path, module: str
) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    key_file = tmp_path / "signing.pem"
    write_private_key(key_file, generate_key())
    production = {
        "FEDBUS_ENV_FILE": str(empty),  # not the local stack's .env (and its keys)
        "FEDBUS_ENV": "production",
        "FEDBUS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "FEDBUS_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "FEDBUS_MINIO_ENDPOINT": "https://127.0.0.1:1",
        "FEDBUS_MINIO_ACCESS_KEY": "fedbus",
        "FEDBUS_MINIO_SECRET_KEY": "not-empty",
        "FEDBUS_POSTGRES_DSN": "postgresql://fedbus:x@127.0.0.1:1/fedbus",
        "FEDBUS_ARTIFACT_KEYS": "",  # set but empty is no key either
        "FEDBUS_ARTIFACT_KEYS_FILE": "",
        "FEDBUS_SIGNING_KEY_FILE": str(key_file),
        "FEDBUS_ROOT_PUBLIC_KEYS": public_key_b64(generate_key()),
    }
    proc = ServiceProcess.start(module, module, log_dir=tmp_path, env=production)
    deadline = time.monotonic() + 60
    while proc.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    if proc.alive():
        proc.stop(sig=9)
        pytest.fail(f"{module} still running after 60 s:\n{proc.text()}")

    assert proc.proc.returncode != 0
    assert "refusing to start in production without artifact keys" in proc.text()
    assert "FEDBUS_ARTIFACT_KEYS" in proc.text()
