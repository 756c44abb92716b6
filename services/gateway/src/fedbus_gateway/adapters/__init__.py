"""Adapters of the gateway's ports: PostgreSQL and in-memory job stores, the registry client."""

from fedbus_gateway.adapters.memory import InMemoryJobStore
from fedbus_gateway.adapters.postgres import PostgresJobStore
from fedbus_gateway.adapters.registry import RegistryClient, RegistryUnavailableError

__all__ = ["InMemoryJobStore", "PostgresJobStore", "RegistryClient", "RegistryUnavailableError"]
