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
    accountant_schema
        ``FEDBUS_ACCOUNTANT_SCHEMA``: the PostgreSQL schema of the accountant's tables (created
        if missing), so that tests can drop one instance's state without touching another's.
    """

    service_name: str = "privacy-accountant"
    consumer_group: str = "privacy-accountant"
    accountant_schema: str = Field(default="public", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
