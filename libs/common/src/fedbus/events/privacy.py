"""Privacy accounting and model registration events."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fedbus.events.envelope import Event, Int32, Metrics, Record
from fedbus.events.records import ModelRef, PrivacyGuarantee

__all__ = ["BudgetStatus", "BudgetUpdated", "ModelRegistered", "PrivacyBudget"]


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


class ModelRegistered(Event):
    """The model registry recorded a new model version."""

    type: Literal["model.registered"] = "model.registered"
    name: str
    version: Int32 = Field(ge=1)
    artifact: ModelRef
    metrics: Metrics = Field(default_factory=dict)
    guarantee: PrivacyGuarantee | None = None
