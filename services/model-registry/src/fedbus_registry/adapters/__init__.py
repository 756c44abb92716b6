"""The registry's adapters: PostgreSQL for metadata (artifacts stay in MinIO)."""

from fedbus_registry.adapters.postgres import PostgresRegistryStore

__all__ = ["PostgresRegistryStore"]
