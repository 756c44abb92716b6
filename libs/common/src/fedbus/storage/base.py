"""The artifact-store port shared by the MinIO adapter and the in-memory fake."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod

import numpy as np

from fedbus.errors import NonRetryableError, RetryableError
from fedbus.events import ModelRef
from fedbus.storage.crypto import AesGcmCipher
from fedbus.storage.tensors import tensors_from_bytes, tensors_to_bytes

__all__ = [
    "SKIP_EXISTING_FROM_BYTES",
    "ArtifactIntegrityError",
    "ArtifactNotFoundError",
    "ArtifactStore",
    "StorageUnavailableError",
    "object_prefix",
    "open_sealed",
    "seal",
    "sha256_hex",
    "update_key",
]


SKIP_EXISTING_FROM_BYTES = 8 * 1024 * 1024
"""Objects at least this large are looked up (HEAD) before being written again."""


class ArtifactIntegrityError(NonRetryableError):
    """The bytes read do not match the reference (size or SHA-256), or do not decrypt."""


class ArtifactNotFoundError(NonRetryableError):
    """No object under the referenced key."""


class StorageUnavailableError(RetryableError):
    """The object store did not answer; worth retrying."""


def object_prefix(job_id: str, round_: int, kind: str) -> str:
    """``jobs/<job_id>/round-<r>/<kind>``: where a round's objects live.

    ``kind`` is ``updates/<client_id>`` (a trainer's delta), ``global`` (the round's new model)
    or ``server-state``; the store appends the SHA-256. Trainers write and the aggregator checks
    update keys with this one rule.
    """
    return f"jobs/{job_id}/round-{round_}/{kind}"


def update_key(job_id: str, round_: int, client_id: str) -> str:
    """``jobs/<job_id>/round-<r>/updates/<client_id>/update``: the one object a client's update
    for a round may be, granted to that client by a presigned PUT and checked by the aggregator.
    """
    return f"{object_prefix(job_id, round_, f'updates/{client_id}')}/update"


def seal(cipher: AesGcmCipher | None, data: bytes, *, key: str) -> bytes:
    """The body to store ``data`` under ``key``: the ``FBE2`` envelope with ``key``
    authenticated, or ``data`` itself without a cipher."""
    return cipher.encrypt(data, associated=key.encode()) if cipher is not None else data


def open_sealed(cipher: AesGcmCipher | None, body: bytes, ref: ModelRef) -> bytes:
    """The plaintext of ``body`` stored under ``ref.object_key``, checked against ``ref``.

    Raises
    ------
    DecryptionError
        The body is not an envelope ``cipher`` opens for ``ref.object_key``.
    ArtifactIntegrityError
        Its size or SHA-256 differ from ``ref``.
    """
    data = cipher.decrypt(body, associated=ref.object_key.encode()) if cipher else body
    if len(data) != ref.size_bytes:
        raise ArtifactIntegrityError(
            f"{ref.object_key}: {len(data)} bytes, the reference says {ref.size_bytes}"
        )
    digest = sha256_hex(data)
    if digest != ref.sha256:
        raise ArtifactIntegrityError(
            f"{ref.object_key}: SHA-256 {digest} does not match the reference {ref.sha256}"
        )
    return data


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


class ArtifactStore(ABC):
    """Content-addressed artifacts: the key ends with the SHA-256 of the plaintext.

    Writes are idempotent (the same bytes land on the same key); every read verifies size and
    SHA-256 against the :class:`~fedbus.events.ModelRef` it was asked for. With a cipher the
    object is stored AES-GCM encrypted in the ``FBE2`` envelope (key id in its header, the
    object key authenticated); the reference still names the plaintext's hash and size.
    """

    def __init__(self, cipher: AesGcmCipher | None = None) -> None:
        self._cipher = cipher

    @abstractmethod
    async def _put(self, key: str, body: bytes, *, sha256: str) -> None:
        """Store ``body`` (whose hex SHA-256 is ``sha256``) under ``key``."""

    @abstractmethod
    async def _get(self, key: str) -> bytes: ...

    @abstractmethod
    async def exists(self, key: str) -> bool:
        """True when an object is stored under ``key``."""

    async def stored_size(self, key: str) -> int | None:
        """Bytes stored under ``key`` (ciphertext when encrypted), without reading them;
        None when the store cannot tell. Raises :class:`ArtifactNotFoundError` when absent."""
        return None

    async def put_bytes(self, data: bytes, *, prefix: str) -> ModelRef:
        """Store ``data`` under ``<prefix>/<sha256>`` and return its reference."""
        digest = sha256_hex(data)
        key = f"{prefix.strip('/')}/{digest}"
        ref = ModelRef(object_key=key, size_bytes=len(data), sha256=digest)
        # The key names the content, so writing it again changes nothing a reader sees. Only
        # a large object is worth a HEAD first; for a small one (a client's update) the
        # extra request costs more than sending it again.
        if len(data) >= SKIP_EXISTING_FROM_BYTES and await self.exists(key):
            return ref
        body = seal(self._cipher, data, key=key)
        await self._put(key, body, sha256=digest if body is data else sha256_hex(body))
        return ref

    async def put_at(self, data: bytes, *, key: str) -> ModelRef:
        """Store ``data`` under exactly ``key`` (not content-addressed: a granted update key)."""
        body = seal(self._cipher, data, key=key)
        await self._put(key, body, sha256=sha256_hex(body))
        return ModelRef(object_key=key, size_bytes=len(data), sha256=sha256_hex(data))

    async def get_bytes(self, ref: ModelRef) -> bytes:
        """Read the object of ``ref``; raises :class:`ArtifactIntegrityError` on any mismatch."""
        return self.open_stored(await self._get(ref.object_key), ref)

    def open_stored(self, body: bytes, ref: ModelRef) -> bytes:
        """The plaintext of ``body`` as stored under ``ref`` (read directly or through a
        presigned URL), decrypted with this store's keys and checked against ``ref``.

        Raises
        ------
        DecryptionError
            The body is not an envelope this store's keys open for ``ref.object_key``.
        ArtifactIntegrityError
            Its size or SHA-256 differ from ``ref``.
        """
        return open_sealed(self._cipher, body, ref)

    async def put_tensors(self, tensors: dict[str, np.ndarray], *, prefix: str) -> ModelRef:
        """Store named arrays as safetensors (never pickle)."""
        return await self.put_bytes(tensors_to_bytes(tensors), prefix=prefix)

    async def get_tensors(self, ref: ModelRef) -> dict[str, np.ndarray]:
        """Read and verify a safetensors artifact."""
        return tensors_from_bytes(await self.get_bytes(ref), source=ref.object_key)
