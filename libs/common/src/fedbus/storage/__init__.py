"""Artifacts in S3-compatible object storage (MinIO): content-addressed, verified, safetensors.

>>> store = S3ArtifactStore.from_settings(settings)
>>> ref = await store.put_tensors({"w": array}, prefix="jobs/j1/round-1/global")
>>> tensors = await store.get_tensors(ref)   # SHA-256 and size verified on every read
"""

from fedbus.storage.base import (
    SKIP_EXISTING_FROM_BYTES,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    ArtifactStore,
    StorageUnavailableError,
    object_prefix,
    open_sealed,
    seal,
    sha256_hex,
    update_key,
)
from fedbus.storage.crypto import AesGcmCipher, DecryptionError
from fedbus.storage.keys import ArtifactKeyError, artifact_cipher
from fedbus.storage.memory import InMemoryArtifactStore
from fedbus.storage.s3 import S3ArtifactStore
from fedbus.storage.tensors import tensors_from_bytes, tensors_to_bytes

__all__ = [
    "SKIP_EXISTING_FROM_BYTES",
    "AesGcmCipher",
    "ArtifactIntegrityError",
    "ArtifactKeyError",
    "ArtifactNotFoundError",
    "ArtifactStore",
    "DecryptionError",
    "InMemoryArtifactStore",
    "S3ArtifactStore",
    "StorageUnavailableError",
    "artifact_cipher",
    "object_prefix",
    "open_sealed",
    "seal",
    "sha256_hex",
    "tensors_from_bytes",
    "tensors_to_bytes",
    "update_key",
]
