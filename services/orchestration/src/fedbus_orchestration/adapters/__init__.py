"""Adapters of the orchestration ports: in memory (tests) and PostgreSQL."""

from fedbus_orchestration.adapters.memory import InMemoryJobStore
from fedbus_orchestration.adapters.postgres import PostgresJobStore

__all__ = ["InMemoryJobStore", "PostgresJobStore"]
