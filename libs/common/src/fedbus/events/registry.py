"""The registry: event type string <-> model class <-> Avro schema."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from fedbus.errors import NonRetryableError
from fedbus.events.envelope import Event
from fedbus.events.jobs import (
    JobAccepted,
    JobCancelRequested,
    JobCompleted,
    JobFailed,
    JobRejected,
    JobRequested,
)
from fedbus.events.keys import KeyPublished
from fedbus.events.ops import DeadLetter, Progress, TrainerHeartbeat
from fedbus.events.privacy import BudgetUpdated, ClientBudgetUpdated, ModelRegistered
from fedbus.events.rounds import RoundAssigned, RoundCompleted, RoundStarted, UpdateSubmitted
from fedbus.events.schemas import event_schema, released_schema
from fedbus.events.sites import RoundDeclined

__all__ = [
    "EVENT_MODELS",
    "EventSpec",
    "UnknownEventTypeError",
    "event_spec",
    "event_specs",
    "event_types",
]

_MODELS: tuple[type[Event], ...] = (
    JobRequested,
    JobAccepted,
    JobRejected,
    JobCancelRequested,
    JobCompleted,
    JobFailed,
    RoundStarted,
    RoundAssigned,
    Progress,
    UpdateSubmitted,
    RoundDeclined,
    RoundCompleted,
    BudgetUpdated,
    ClientBudgetUpdated,
    ModelRegistered,
    TrainerHeartbeat,
    KeyPublished,
    DeadLetter,
)
EVENT_MODELS: Mapping[str, type[Event]] = MappingProxyType(
    {model.event_type(): model for model in _MODELS}
)
"""Every event type string mapped to its model class."""


class UnknownEventTypeError(NonRetryableError):
    """No event of this type exists."""


@dataclass(frozen=True)
class EventSpec:
    """One event type: its string, model class and current schema version.

    Attributes
    ----------
    event_type
        The event type, also its topic name.
    model
        The pydantic model class.
    version
        The current schema version (``SCHEMA_VERSION`` of the model).
    """

    event_type: str
    model: type[Event]
    version: int

    @property
    def schema(self) -> dict[str, Any]:
        """The parsed current Avro schema (loaded from ``schemas/`` on first use)."""
        return event_schema(self.event_type)

    def writer_schema(self, version: int) -> dict[str, Any]:
        """Return the parsed schema that events of ``version`` were written with."""
        if version == self.version:
            return self.schema
        return released_schema(self.event_type, version)


_SPECS: Mapping[str, EventSpec] = MappingProxyType(
    {t: EventSpec(event_type=t, model=m, version=m.SCHEMA_VERSION) for t, m in EVENT_MODELS.items()}
)
"""Built once: encoding and decoding look a spec up on every event."""


def event_spec(key: str | type[Event]) -> EventSpec:
    """Return the spec of an event type given its string or its model class.

    Raises
    ------
    UnknownEventTypeError
        When the type is not registered.
    """
    event_type = key if isinstance(key, str) else key.event_type()
    spec = _SPECS.get(event_type)
    if spec is None:
        raise UnknownEventTypeError(event_type)
    return spec


def event_types() -> tuple[str, ...]:
    """Return every registered event type string."""
    return tuple(EVENT_MODELS)


def event_specs() -> tuple[EventSpec, ...]:
    """Return the spec of every registered event type."""
    return tuple(event_spec(event_type) for event_type in EVENT_MODELS)
