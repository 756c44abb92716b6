"""The accountant's adapters: PostgreSQL for its state."""

from fedbus_accountant.adapters.postgres import PostgresAccountantStore, drop_state

__all__ = ["PostgresAccountantStore", "drop_state"]
