"""The privacy-accountant's settings (``FEDBUS_*`` variables over the shared base)."""

from __future__ import annotations

from pydantic import Field

from fedbus.settings import FedbusSettings

__all__ = ["AccountantSettings"]


class AccountantSettings(FedbusSettings):
    """Shared Kafka/PostgreSQL/HTTP settings plus the accountant's own.

    Attributes
    ----------
    consumer_group
        ``FEDBUS_CONSUMER_GROUP``: a new group starts at the earliest offsets, which is how a
        wiped accountant rebuilds its ledger; tests run instances side by side with their own.
    client_lifetime_epsilon
        ``FEDBUS_CLIENT_LIFETIME_EPSILON``: optional cap on the epsilon one client may spend on
        one dataset across every job; a round that would pass it marks the budget exhausted.
    accountant_schema
        ``FEDBUS_ACCOUNTANT_SCHEMA``: the PostgreSQL schema of the accountant's tables (created
        if missing), so that tests can drop one instance's state without touching another's.
    """

    service_name: str = "privacy-accountant"
    consumer_group: str = "privacy-accountant"
    client_lifetime_epsilon: float | None = Field(default=None, gt=0)
    accountant_schema: str = Field(default="public", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
