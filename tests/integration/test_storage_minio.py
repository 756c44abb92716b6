"""The artifact store against the real MinIO server."""

from __future__ import annotations

import asyncio
import base64
import urllib.request
import uuid

import numpy as np
import pytest
from botocore.exceptions import ClientError

from fedbus.settings import FedbusSettings
from fedbus.storage import (
    AesGcmCipher,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    S3ArtifactStore,
    sha256_hex,
)


def _download(url: str, settings: FedbusSettings) -> bytes:
    """GET a presigned link, checking MinIO's certificate against the stack's CA."""
    with urllib.request.urlopen(url, context=settings.minio_ssl_context()) as response:
        return bytes(response.read())


def _plain(settings: FedbusSettings) -> S3ArtifactStore:
    """A store without a cipher, whatever artifact keys the stack's .env holds."""
    configured = S3ArtifactStore.from_settings(settings)
    return S3ArtifactStore(configured._s3, configured.bucket)


async def test_tensors_round_trip_through_minio_and_tampering_is_caught(
    settings: FedbusSettings,
) -> None:
    store = _plain(settings)
    await store.ensure_bucket()
    tensors = {"w": np.linspace(0, 1, 1000, dtype=np.float32).reshape(10, 100)}
    prefix = f"test/{uuid.uuid4().hex[:8]}"

    ref = await store.put_tensors(tensors, prefix=prefix)
    back = await store.get_tensors(ref)
    downloaded = await asyncio.to_thread(
        _download, store.presigned_url(ref, expires_s=60), settings
    )

    np.testing.assert_array_equal(back["w"], tensors["w"])
    assert sha256_hex(downloaded) == ref.sha256
    store._s3.put_object(Bucket=store.bucket, Key=ref.object_key, Body=downloaded[:-4] + b"oops")
    with pytest.raises(ArtifactIntegrityError):
        await store.get_tensors(ref)


async def test_minio_stores_only_a_body_that_matches_the_sha256_sent_with_it(
    settings: FedbusSettings,
) -> None:
    store = _plain(settings)
    await store.ensure_bucket()
    ref = await store.put_bytes(b"weights" * 1000, prefix=f"test/{uuid.uuid4().hex[:8]}")

    head = store._s3.head_object(Bucket=store.bucket, Key=ref.object_key, ChecksumMode="ENABLED")
    assert base64.b64decode(head["ChecksumSHA256"]).hex() == ref.sha256  # checked on the way in

    with pytest.raises(ClientError):  # a body changed on the way is refused, not stored
        store._s3.put_object(
            Bucket=store.bucket,
            Key=f"{ref.object_key}-tampered",
            Body=b"weights" * 999 + b"WEIGHTS",
            ChecksumSHA256=head["ChecksumSHA256"],
        )
    assert not await store.exists(f"{ref.object_key}-tampered")


async def test_an_encrypted_artifact_is_sent_with_the_ciphertexts_sha256(
    settings: FedbusSettings,
) -> None:
    plain = S3ArtifactStore.from_settings(settings)
    store = S3ArtifactStore(plain._s3, plain.bucket, AesGcmCipher(bytes(range(32))))
    await store.ensure_bucket()
    tensors = {"w": np.arange(300, dtype=np.float32)}

    ref = await store.put_tensors(tensors, prefix=f"test/{uuid.uuid4().hex[:8]}")

    np.testing.assert_array_equal((await store.get_tensors(ref))["w"], tensors["w"])
    stored = store._s3.get_object(Bucket=store.bucket, Key=ref.object_key)["Body"].read()
    assert sha256_hex(stored) != ref.sha256  # at rest it is ciphertext
    head = store._s3.head_object(Bucket=store.bucket, Key=ref.object_key, ChecksumMode="ENABLED")
    assert base64.b64decode(head["ChecksumSHA256"]).hex() == sha256_hex(stored)


async def test_the_stored_size_comes_from_a_head_request_without_reading_the_body(
    settings: FedbusSettings,
) -> None:
    store = S3ArtifactStore.from_settings(settings)  # encrypted when the stack has keys
    await store.ensure_bucket()
    data = b"x" * 10_000
    ref = await store.put_bytes(data, prefix=f"test/{uuid.uuid4().hex[:8]}")

    stored = await store.stored_size(ref.object_key)

    body = store._s3.get_object(Bucket=store.bucket, Key=ref.object_key)["Body"].read()
    assert stored == len(body)
    with pytest.raises(ArtifactNotFoundError):
        await store.stored_size(ref.object_key + "-missing")
