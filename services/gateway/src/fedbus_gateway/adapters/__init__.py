"""Adapters of the gateway's ports: the PostgreSQL job store, the registry client."""

from fedbus_gateway.adapters.postgres import PostgresJobStore
from fedbus_gateway.adapters.registry import (
    RegistryArtifact,
    RegistryClient,
    RegistryUnavailableError,
)

__all__ = ["PostgresJobStore", "RegistryArtifact", "RegistryClient", "RegistryUnavailableError"]
