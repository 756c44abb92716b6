"""An in-memory artifact store for unit tests (same verification as the real one)."""

from __future__ import annotations

from fedbus.storage.base import ArtifactNotFoundError, ArtifactStore
from fedbus.storage.crypto import AesGcmCipher

__all__ = ["InMemoryArtifactStore"]


class InMemoryArtifactStore(ArtifactStore):
    """Objects in a dict; ``objects`` is public so tests can tamper with them."""

    def __init__(self, cipher: AesGcmCipher | None = None) -> None:
        super().__init__(cipher)
        self.objects: dict[str, bytes] = {}

    async def _put(self, key: str, body: bytes, *, sha256: str) -> None:
        self.objects[key] = body

    async def _get(self, key: str) -> bytes:
        try:
            return self.objects[key]
        except KeyError:
            raise ArtifactNotFoundError(f"no artifact {key}") from None

    async def stored_size(self, key: str) -> int | None:
        """See :class:`ArtifactStore`."""
        if key not in self.objects:
            raise ArtifactNotFoundError(f"no artifact {key}")
        return len(self.objects[key])

    async def exists(self, key: str) -> bool:
        """See :class:`ArtifactStore`."""
        return key in self.objects
