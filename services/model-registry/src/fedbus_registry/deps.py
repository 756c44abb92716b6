"""The one dependency object the registry's handlers take."""

from __future__ import annotations

from dataclasses import dataclass

from fedbus.storage import ArtifactStore
from fedbus_registry.store import RegistryStore

__all__ = ["Deps"]


@dataclass(frozen=True)
class Deps:
    """What the registry's handlers need.

    Attributes
    ----------
    store
        Jobs, rounds, completions and the registered versions.
    artifacts
        Where the final models are (read to verify size and SHA-256 before registering).
    register_cancelled
        Also register cancelled jobs that have a final model (``FEDBUS_REGISTER_CANCELLED``).
    """

    store: RegistryStore
    artifacts: ArtifactStore
    register_cancelled: bool = False
