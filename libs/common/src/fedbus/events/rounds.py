"""Round events: started, assigned to one trainer, an update submitted, completed."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field

from fedbus.events.envelope import Event, Int32, Int64, Metrics, Record, UtcDatetime
from fedbus.events.records import (
    BaseModelRef,
    DpUsage,
    LoraSpec,
    ModelOptions,
    ModelRef,
    PrivacySpec,
    StrategySpec,
    TrainingConfig,
)

__all__ = [
    "ASSIGNED_TOPIC_PREFIX",
    "CLIENT_ID_PATTERN",
    "RESERVED_CLIENT_IDS",
    "DroppedClient",
    "RoundAssigned",
    "RoundCompleted",
    "RoundStarted",
    "UpdateSubmitted",
    "assigned_topic",
    "check_client_id",
]

ASSIGNED_TOPIC_PREFIX = "round.assigned."
"""``round.assigned.<client_id>``: the topic of one trainer's assignments."""

CLIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""A trainer's client id: it names a Kafka principal, a topic and a state folder."""

RESERVED_CLIENT_IDS = frozenset({"dlq"})
"""``round.assigned.dlq`` is the family's dead-letter topic, no trainer's."""


class RoundStarted(Event):
    """Orchestration opened a round: who trains, from which model, until when, and how."""

    SCHEMA_VERSION: ClassVar[int] = 3

    type: Literal["round.started"] = "round.started"
    round: Int32
    selected_clients: list[str]
    min_clients: Int32
    deadline: UtcDatetime
    global_model: ModelRef | None = None
    model: str
    model_options: ModelOptions = Field(default_factory=dict)
    dataset: str
    training: TrainingConfig
    strategy: StrategySpec
    privacy: PrivacySpec
    lora: LoraSpec | None = None
    seed: Int64


class RoundAssigned(Event):
    """The aggregator hands one selected trainer its round: what to train, and the grants.

    It answers a ``round.started`` (``started_event_id``) for one client and carries what
    that trainer needs of it, plus presigned URLs: one GET of the global model (null in
    round 1) and one PUT of the client's own update under ``update_key``, both expiring at
    ``urls_expire_at``. It travels on the trainer's own topic
    ``round.assigned.<client_id>`` (:meth:`topic`), which only that trainer may read.
    """

    SCHEMA_VERSION: ClassVar[int] = 3

    type: Literal["round.assigned"] = "round.assigned"
    round: Int32
    client_id: str
    started_event_id: str
    deadline: UtcDatetime
    global_model: ModelRef | None = None
    model: str
    model_options: ModelOptions = Field(default_factory=dict)
    dataset: str
    training: TrainingConfig
    strategy: StrategySpec
    privacy: PrivacySpec
    lora: LoraSpec | None = None
    seed: Int64
    global_model_url: str | None = None
    update_url: str
    update_key: str
    urls_expire_at: UtcDatetime

    def topic(self) -> str:
        """``round.assigned.<client_id>``: the addressed trainer's own topic."""
        return assigned_topic(self.client_id)


def check_client_id(client_id: str) -> str:
    """``client_id`` when it may name a trainer; else a ``ValueError`` saying why.

    1 to 100 letters, digits, ``.``, ``_`` and ``-`` (not first), and not ``dlq``.
    """
    if not CLIENT_ID_PATTERN.fullmatch(client_id):
        raise ValueError(
            f"client id {client_id!r}: use 1 to 100 letters, digits, '.', '_' and '-' "
            "(not first); it names a Kafka principal and topic"
        )
    if client_id in RESERVED_CLIENT_IDS:
        raise ValueError(f"client id {client_id!r} is reserved (round.assigned.dlq)")
    return client_id


def assigned_topic(client_id: str) -> str:
    """The topic of ``client_id``'s ``round.assigned`` events."""
    return ASSIGNED_TOPIC_PREFIX + client_id


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
    """The aggregator combined a round's updates into a new global model.

    With LoRA, ``global_model`` holds the adapters and head; ``base_model`` names the base
    weights they apply to.
    """

    SCHEMA_VERSION: ClassVar[int] = 2

    type: Literal["round.completed"] = "round.completed"
    round: Int32
    global_model: ModelRef
    participants: list[str]
    dropped: list[DroppedClient] = Field(default_factory=list)
    total_samples: Int64 = Field(ge=0)
    metrics: Metrics = Field(default_factory=dict)
    dp: DpUsage | None = None
    base_model: BaseModelRef | None = None
