"""The one dependency object the registry's handlers take."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fedbus.storage import ArtifactStore
from fedbus_registry.store import RegistryStore

__all__ = ["Deps", "RawOut"]


class RawOut(Protocol):
    """Puts encoded bytes on a topic as they are (the Kafka producer; the in-memory bus)."""

    async def publish_raw(
        self, topic: str, value: bytes, *, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        """Publish ``value`` on ``topic``."""


@dataclass(frozen=True)
class Deps:
    """What the registry's handlers need.

    Attributes
    ----------
    store
        Jobs, rounds, ledgers, completions, refusals and the registered versions.
    artifacts
        Where the final models are (read to verify size and SHA-256 before registering).
    dead_letters
        Where a refused ``job.completed`` is parked (``job.completed.dlq``) when the event
        that proves it wrong is not the ``job.completed`` itself (see the handlers module).
    register_cancelled
        Also register cancelled jobs that have a final model (``FEDBUS_REGISTER_CANCELLED``).
    group
        The consumer group: the ``source`` of the dead letters the registry parks itself.
    """

    store: RegistryStore
    artifacts: ArtifactStore
    dead_letters: RawOut
    register_cancelled: bool = False
    group: str = "model-registry"
