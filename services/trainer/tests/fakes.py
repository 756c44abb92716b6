"""A fake of the trainer's granted artifacts: presigned URLs over an in-memory store."""

from __future__ import annotations

from fedbus.events import ModelRef
from fedbus.storage import InMemoryArtifactStore
from fedbus_trainer import GrantRefusedError

__all__ = ["FakeGrants", "get_url", "put_url"]


def get_url(key: str) -> str:
    """The fake URL that grants reading ``key``."""
    return f"memory://get/{key}"


def put_url(key: str) -> str:
    """The fake URL that grants writing ``key``."""
    return f"memory://put/{key}"


class FakeGrants:
    """:class:`~fedbus_trainer.GrantedArtifacts` over ``store``: a URL works for its key only.

    ``requests`` lists what was asked, in order: ``("GET" | "PUT", key)``.
    """

    def __init__(self, store: InMemoryArtifactStore) -> None:
        self.store = store
        self.requests: list[tuple[str, str]] = []

    async def get_bytes(self, url: str, ref: ModelRef) -> bytes:
        """``ref``'s plaintext, checked, when ``url`` grants reading its key."""
        self.requests.append(("GET", ref.object_key))
        if url != get_url(ref.object_key):
            raise GrantRefusedError(f"GET {ref.object_key}: refused (403, AccessDenied)")
        return await self.store.get_bytes(ref)

    async def put_bytes(self, url: str, data: bytes, *, key: str) -> ModelRef:
        """Store ``data`` under ``key`` when ``url`` grants writing it."""
        self.requests.append(("PUT", key))
        if url != put_url(key):
            raise GrantRefusedError(f"PUT {key}: refused (403, AccessDenied)")
        return await self.store.put_at(data, key=key)
