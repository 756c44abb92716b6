"""Privacy accounting and model registration events."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from fedbus.events.envelope import Event, Int32, Int64, Metrics, Record
from fedbus.events.records import BaseModelRef, ModelRef, PrivacyGuarantee

__all__ = [
    "BudgetStatus",
    "BudgetUpdated",
    "ClientBudgetUpdated",
    "GaussianSpend",
    "ModelRegistered",
    "PrivacyBudget",
]


class PrivacyBudget(Record):
    """The (epsilon, delta) a job may spend."""

    epsilon: float
    delta: float


class BudgetStatus(Record):
    """Epsilon spent and left, at a fixed delta."""

    epsilon_spent: float
    epsilon_remaining: float
    delta: float


class BudgetUpdated(Event):
    """The privacy accountant recomputed a job's spend (per job and per client)."""

    type: Literal["budget.updated"] = "budget.updated"
    round: Int32 | None = None
    budget: PrivacyBudget
    total: BudgetStatus
    clients: dict[str, BudgetStatus] = Field(default_factory=dict)
    exhausted: bool


class GaussianSpend(Record):
    """Steps of one sampled Gaussian mechanism in a client's lifetime ledger."""

    noise_multiplier: float = Field(ge=0)
    sample_rate: float = Field(gt=0, le=1)
    steps: Int64 = Field(ge=0)


class ClientBudgetUpdated(Event):
    """A data owner's lifetime spend on one dataset, across every job; keyed by ``client_id``.

    ``job_id`` is the job whose spending caused the update. ``entries`` only grows: of two
    updates of the same client and dataset, the one with more entries is the newer.
    """

    type: Literal["client.budget.updated"] = "client.budget.updated"
    client_id: str = Field(min_length=1)
    dataset: str = Field(min_length=1)
    entries: Int64 = Field(ge=0)
    mechanisms: list[GaussianSpend]
    rounds: dict[str, list[Int32]] = Field(default_factory=dict)
    epsilon_spent: float = Field(ge=0)
    delta: float = Field(gt=0, lt=1)
    cap: float | None = Field(default=None, gt=0)

    def kafka_key(self) -> bytes | None:
        """Return the Kafka message key: the UTF-8 client id."""
        return self.client_id.encode("utf-8")


class ModelRegistered(Event):
    """The model registry recorded a new model version."""

    SCHEMA_VERSION: ClassVar[int] = 3

    type: Literal["model.registered"] = "model.registered"
    name: str
    version: Int32 = Field(ge=1)
    artifact: ModelRef
    metrics: Metrics = Field(default_factory=dict)
    guarantee: PrivacyGuarantee | None = None
    base_model: BaseModelRef | None = None
