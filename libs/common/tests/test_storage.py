"""Artifacts are content-addressed, verified on every read, and refused when tampered with."""

from __future__ import annotations

import base64
import os

import numpy as np
import pytest

from fedbus.errors import NonRetryableError
from fedbus.storage import (
    SKIP_EXISTING_FROM_BYTES,
    AesGcmCipher,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    DecryptionError,
    InMemoryArtifactStore,
    sha256_hex,
    tensors_from_bytes,
    tensors_to_bytes,
)


def weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"conv.weight": rng.normal(size=(8, 1, 3, 3)).astype(np.float32),
            "fc.bias": np.arange(10, dtype=np.float32)}  # fmt: skip


async def test_tensors_round_trip_and_the_key_is_the_plaintext_hash() -> None:
    store = InMemoryArtifactStore()

    ref = await store.put_tensors(weights(), prefix="jobs/j1/round-1")
    back = await store.get_tensors(ref)

    assert ref.object_key == f"jobs/j1/round-1/{ref.sha256}"
    assert ref.sha256 == sha256_hex(tensors_to_bytes(weights()))
    assert back.keys() == weights().keys()
    for name, array in weights().items():
        np.testing.assert_array_equal(back[name], array)


class CountingStore(InMemoryArtifactStore):
    def __init__(self) -> None:
        super().__init__()
        self.heads = self.puts = 0

    async def _put(self, key: str, body: bytes, *, sha256: str) -> None:
        self.puts += 1
        await super()._put(key, body, sha256=sha256)

    async def exists(self, key: str) -> bool:
        self.heads += 1
        return await super().exists(key)


async def test_the_same_small_bytes_are_written_again_under_one_key() -> None:
    store = CountingStore()

    first = await store.put_bytes(b"abc", prefix="p")
    second = await store.put_bytes(b"abc", prefix="p")

    assert first == second
    assert len(store.objects) == 1
    assert (store.heads, store.puts) == (0, 2)  # small: written again, no lookup first


async def test_a_large_object_already_stored_is_not_sent_again() -> None:
    store = CountingStore()
    big = os.urandom(SKIP_EXISTING_FROM_BYTES)

    first = await store.put_bytes(big, prefix="p")
    second = await store.put_bytes(big, prefix="p")

    assert first == second
    assert (store.heads, store.puts) == (2, 1)


async def test_a_tampered_object_is_refused() -> None:
    store = InMemoryArtifactStore()
    ref = await store.put_bytes(b"model bytes", prefix="p")
    store.objects[ref.object_key] = b"model bytez"

    with pytest.raises(ArtifactIntegrityError, match="SHA-256"):
        await store.get_bytes(ref)


async def test_a_reference_with_the_wrong_size_is_refused() -> None:
    store = InMemoryArtifactStore()
    ref = await store.put_bytes(b"model bytes", prefix="p")

    with pytest.raises(ArtifactIntegrityError, match="bytes"):
        await store.get_bytes(ref.model_copy(update={"size_bytes": 3}))


async def test_a_missing_object_says_which() -> None:
    ref = await InMemoryArtifactStore().put_bytes(b"x", prefix="p")

    with pytest.raises(ArtifactNotFoundError, match=ref.object_key):
        await InMemoryArtifactStore().get_bytes(ref)


async def test_encrypted_at_rest_and_a_wrong_key_or_tampering_is_refused() -> None:
    key = os.urandom(32)
    store = InMemoryArtifactStore(AesGcmCipher(key))
    ref = await store.put_bytes(b"secret weights", prefix="p")
    stored = store.objects[ref.object_key]

    assert b"secret weights" not in stored
    assert await store.get_bytes(ref) == b"secret weights"
    wrong = InMemoryArtifactStore(
        AesGcmCipher.from_base64(base64.b64encode(os.urandom(32)).decode())
    )
    wrong.objects = dict(store.objects)
    with pytest.raises(DecryptionError):
        await wrong.get_bytes(ref)
    store.objects[ref.object_key] = stored[:-1] + bytes([stored[-1] ^ 1])
    with pytest.raises(DecryptionError):
        await store.get_bytes(ref)


def test_bytes_that_are_not_safetensors_are_refused_by_name() -> None:
    with pytest.raises(NonRetryableError, match="jobs/x"):
        tensors_from_bytes(b"\x80\x04 pickle?", source="jobs/x")
