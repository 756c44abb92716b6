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


# Written by the executor's own envelope (``fedbus_executor.crypto.encrypt``, magic FBENC1,
# the magic as associated data) before the two formats were merged, with key bytes(range(32))
# and bytes(range(100, 116)): checkpoints on disk look like this and must still resume.
LEGACY_FBENC1_32 = bytes.fromhex(
    "4642454e4331bfd4d3c6fdb63f74c01e2a4b9cee3f528003c3afa709884a0bad5f575d29ecf4f81c088fdf"
    "81a8d4eeb2523b7ca9b0e04367546066e1fab64c003301abaaa7c1985961c6d0ed74c95c835bba4057e6"
    "3deb2f94a773"
)
LEGACY_FBENC1_16 = bytes.fromhex(
    "4642454e433177cb93b2968628d93c3ae25d326033c0a5e58f3e85781becca5dbefdfa4b93ee409e31d78fbd776dc3"
)


def test_the_legacy_fbenc1_envelope_still_decrypts() -> None:
    old_32 = AesGcmCipher(bytes(range(32))).decrypt(LEGACY_FBENC1_32, associated=b"any")
    old_16 = AesGcmCipher(bytes(range(100, 116))).decrypt(LEGACY_FBENC1_16, associated=b"")

    assert old_32 == b"written by fedbus_executor.crypto before the one envelope"
    assert old_16 == b"a 16-byte key"


@pytest.mark.parametrize("position", [0, 5, 10, 20, -1])
def test_a_flipped_byte_of_the_legacy_envelope_is_refused(position: int) -> None:
    tampered = bytearray(LEGACY_FBENC1_32)
    tampered[position] ^= 0x01

    with pytest.raises(DecryptionError):
        AesGcmCipher(bytes(range(32))).decrypt(bytes(tampered), associated=b"")


def test_the_envelope_is_fbe2_and_binds_its_associated_data() -> None:
    cipher = AesGcmCipher(os.urandom(32))

    body = cipher.encrypt(b"weights", associated=b"jobs/j/round-1/ab")

    assert body.startswith(b"FBE2\x07default")
    assert cipher.decrypt(body, associated=b"jobs/j/round-1/ab") == b"weights"
    with pytest.raises(DecryptionError, match="authentication failed"):
        cipher.decrypt(body, associated=b"jobs/j/round-2/ab")
    for position in (4, 8, 16, 30, len(body) - 1):  # id length, id, nonce, ciphertext, tag
        tampered = bytearray(body)
        tampered[position] ^= 0x80
        with pytest.raises(DecryptionError):
            cipher.decrypt(bytes(tampered), associated=b"jobs/j/round-1/ab")


def test_plain_or_truncated_bytes_are_not_an_envelope() -> None:
    cipher = AesGcmCipher(bytes(32))

    with pytest.raises(DecryptionError, match="not an encrypted"):
        cipher.decrypt(b"plain safetensors", associated=b"")
    with pytest.raises(DecryptionError, match="truncated"):
        cipher.decrypt(b"FBE1" + bytes(20), associated=b"")
    with pytest.raises(ValueError, match="16, 24 or 32"):
        AesGcmCipher(bytes(31))
