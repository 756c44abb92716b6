"""Round events: started, an update submitted, completed."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fedbus.events.envelope import Event, Int32, Int64, Metrics, Record, UtcDatetime
from fedbus.events.records import DpUsage, ModelRef, PrivacySpec, StrategySpec, TrainingConfig

__all__ = ["DroppedClient", "RoundCompleted", "RoundStarted", "UpdateSubmitted"]


class RoundStarted(Event):
    """Orchestration opened a round: who trains, from which model, until when, and how."""

    type: Literal["round.started"] = "round.started"
    round: Int32
    selected_clients: list[str]
    min_clients: Int32
    deadline: UtcDatetime
    global_model: ModelRef | None = None
    model: str
    dataset: str
    training: TrainingConfig
    strategy: StrategySpec
    privacy: PrivacySpec
    seed: Int64


class UpdateSubmitted(Event):
    """A trainer uploaded its update for a round (by reference) with the DP it used."""

    type: Literal["update.submitted"] = "update.submitted"
    round: Int32
    client_id: str
    update: ModelRef
    num_samples: Int64 = Field(ge=0)
    metrics: Metrics = Field(default_factory=dict)
    dp: DpUsage | None = None


class DroppedClient(Record):
    """A selected trainer whose update was not aggregated, and why."""

    client_id: str
    code: str
    message: str


class RoundCompleted(Event):
    """The aggregator combined a round's updates into a new global model."""

    type: Literal["round.completed"] = "round.completed"
    round: Int32
    global_model: ModelRef
    participants: list[str]
    dropped: list[DroppedClient] = Field(default_factory=list)
    total_samples: Int64 = Field(ge=0)
    metrics: Metrics = Field(default_factory=dict)
    dp: DpUsage | None = None
