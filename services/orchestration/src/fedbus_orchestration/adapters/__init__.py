"""Adapters of the orchestration ports: PostgreSQL."""

from fedbus_orchestration.adapters.postgres import PostgresJobStore

__all__ = ["PostgresJobStore"]
