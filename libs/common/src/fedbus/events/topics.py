"""The topic catalog: ``schemas/topics.yaml`` as typed, validated objects."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fedbus.events.schemas import schema_dir

if TYPE_CHECKING:
    from fedbus.events.envelope import Event

E = TypeVar("E", bound="Event")

__all__ = ["DEAD_LETTER_SUFFIX", "TopicCatalog", "TopicSpec", "load_topics"]

DEAD_LETTER_SUFFIX = ".dlq"


class TopicSpec(BaseModel):
    """One Kafka topic.

    Attributes
    ----------
    name
        Topic name; equal to the event type it carries, or ``<topic>.dlq``.
    event_types
        Event types published on it.
    key
        The event field used as message key (``job_id``, or ``client_id`` for
        heartbeats; a dead-letter topic keeps the original record's key).
    partitions
        Partition count.
    config
        Kafka topic configuration (``cleanup.policy``, ``retention.ms``, ...).
    producers, consumers
        Services (or external parties) that write and read it.
    dead_letter_of
        For a dead-letter topic, the topic whose failed records it holds.
    addressed_by
        For a family of topics, one per addressee: the event field naming it. The topics are
        ``<name>.<value>`` (``round.assigned.<client_id>``); ``name`` itself is no topic.
    writer
        For a family whose members each have one writer (``upstream-{}`` for
        ``upstream.job.requested.<tenant>``): that principal, ``{}`` standing for the value.
        A consumer sets the event's ``source`` to it (:meth:`TopicCatalog.admit`).
    description
        One line for the docs.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    event_types: list[str] = Field(min_length=1)
    key: str
    partitions: int = Field(ge=1)
    config: dict[str, str]
    producers: list[str]
    consumers: list[str]
    dead_letter_of: str | None = None
    addressed_by: str | None = None
    writer: str | None = None
    description: str

    def member(self, value: str) -> str:
        """The topic of one addressee of this family: ``<name>.<value>``."""
        if self.addressed_by is None:
            raise ValueError(f"topic {self.name} is not a family")
        return f"{self.name}.{value}"

    def value_of(self, topic: str) -> str:
        """The addressee a member names: ``acme`` for ``upstream.job.requested.acme``."""
        if self.addressed_by is None or not topic.startswith(self.name + "."):
            raise ValueError(f"topic {topic} is no member of {self.name}")
        return topic[len(self.name) + 1 :]

    def kafka_config(self) -> dict[str, str]:
        """Return the topic configuration to create the topic with."""
        return dict(self.config)


class TopicCatalog(BaseModel):
    """Every topic fedbus uses."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    topics: list[TopicSpec]

    @model_validator(mode="after")
    def _names_unique(self) -> TopicCatalog:
        names = [topic.name for topic in self.topics]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"topics declared twice: {', '.join(duplicates)}")
        return self

    def get(self, name: str) -> TopicSpec:
        """Return the topic called ``name``.

        Raises
        ------
        KeyError
            When no such topic is declared.
        """
        for topic in self.topics:
            if topic.name == name:
                return topic
        raise KeyError(name)

    def dead_letter_topic(self, name: str) -> TopicSpec:
        """Return the dead-letter topic of topic ``name``."""
        return self.get(f"{name}{DEAD_LETTER_SUFFIX}")

    def family_of(self, topic: str) -> TopicSpec | None:
        """The family whose member ``topic`` is (``round.assigned.c1``), else None.

        A family's own dead-letter topic (``round.assigned.dlq``) is a topic of its own,
        no member.
        """
        for spec in self.topics:
            if (
                spec.addressed_by is not None
                and topic.startswith(spec.name + ".")
                and topic != spec.name + DEAD_LETTER_SUFFIX
            ):
                return spec
        return None

    def families(self) -> list[TopicSpec]:
        """Return the topic families (entries with ``addressed_by``)."""
        return [topic for topic in self.topics if topic.addressed_by is not None]

    def families_carrying(self, event_types: Iterable[str]) -> list[TopicSpec]:
        """Return the families whose members carry any of ``event_types``."""
        wanted = set(event_types)
        return [f for f in self.families() if wanted & set(f.event_types)]

    def admit(self, event: E, topic: str) -> E:
        """``event`` as read from ``topic``, or a ``ValueError`` saying why it does not belong.

        On a plain topic the event's type must be the topic's. On a family's member the type
        must be the family's and the addressed field must name that member (an event for
        tenant ``b`` on ``upstream.job.requested.a`` is refused); with a ``writer``, the
        returned event's ``source`` is that principal (``upstream-a``), never the payload's.
        """
        if event.topic() == topic:
            return self._bind(event, topic)
        family = self.family_of(topic)
        if family is None or event.type not in family.event_types:
            raise ValueError(f"type: {event.type!r} events do not belong on topic {topic!r}")
        field = family.addressed_by or ""
        claimed = getattr(event, field, None)
        value = family.value_of(topic)
        if claimed != value:
            raise ValueError(
                f"{field}: {claimed!r} in the event, but topic {topic!r} is {field} {value!r}'s "
                f"(its {field} comes from the topic its producer may write)"
            )
        return self._bind(event, topic)

    def _bind(self, event: E, topic: str) -> E:
        family = self.family_of(topic)
        if family is None or family.writer is None:
            return event
        writer = family.writer.replace("{}", family.value_of(topic))
        return event if event.source == writer else event.model_copy(update={"source": writer})

    def event_topics(self) -> list[TopicSpec]:
        """Return the topics that are not dead-letter topics."""
        return [topic for topic in self.topics if topic.dead_letter_of is None]


def load_topics(path: Path | None = None) -> TopicCatalog:
    """Load and validate the topic catalog.

    Parameters
    ----------
    path
        The YAML file; ``schemas/topics.yaml`` when None.

    Returns
    -------
    TopicCatalog
        The validated catalog.
    """
    source = path if path is not None else schema_dir() / "topics.yaml"
    return TopicCatalog.model_validate(yaml.safe_load(source.read_text(encoding="utf-8")))
