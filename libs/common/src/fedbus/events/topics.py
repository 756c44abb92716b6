"""The topic catalog: ``schemas/topics.yaml`` as typed, validated objects."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fedbus.events.schemas import schema_dir

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
    description: str

    def member(self, value: str) -> str:
        """The topic of one addressee of this family: ``<name>.<value>``."""
        if self.addressed_by is None:
            raise ValueError(f"topic {self.name} is not a family")
        return f"{self.name}.{value}"

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
