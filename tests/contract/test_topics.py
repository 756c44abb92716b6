"""topics.yaml and the schemas describe the same set of events."""

from __future__ import annotations

import pytest

from fedbus.events import event_spec, event_types, load_topics
from fedbus.events.topics import DEAD_LETTER_SUFFIX

pytestmark = pytest.mark.contract

SERVICES = {
    "gateway",
    "orchestration",
    "trainer",
    "aggregator",
    "privacy-accountant",
    "model-registry",
}
EXTERNAL = {"upstream", "dashboard", "operator", "auditor"}


def test_every_event_type_is_on_a_topic_and_every_topic_has_a_schema() -> None:
    catalog = load_topics()

    on_topics = {event for topic in catalog.topics for event in topic.event_types}

    assert on_topics == set(event_types())


def test_event_topics_are_named_after_their_event_type() -> None:
    for topic in load_topics().event_topics():
        if topic.addressed_by is None or topic.writer is None:
            assert topic.event_types == [topic.name]
        else:  # an intake family: one writer per member, named after the type it carries
            assert topic.name.endswith("." + topic.event_types[0]), topic.name


def test_a_family_names_a_field_of_its_event_and_a_writer_per_member() -> None:
    for family in load_topics().families():
        fields = {field["name"] for field in event_spec(family.event_types[0]).schema["fields"]}
        assert family.addressed_by in fields, family.name
        assert family.writer is None or family.writer.count("{}") == 1, family.name


def test_every_event_topic_has_a_dead_letter_topic() -> None:
    catalog = load_topics()

    for topic in catalog.event_topics():
        dlq = catalog.dead_letter_topic(topic.name)
        assert dlq.dead_letter_of == topic.name
        assert dlq.event_types == ["dead.letter"]
        assert dlq.name == f"{topic.name}{DEAD_LETTER_SUFFIX}"
    assert len(catalog.topics) == 2 * len(catalog.event_topics())


def test_topic_key_is_a_field_of_its_event() -> None:
    for topic in load_topics().event_topics():
        fields = {field["name"] for field in event_spec(topic.event_types[0]).schema["fields"]}
        assert topic.key in fields, topic.name


def test_producers_and_consumers_are_known_parties() -> None:
    for topic in load_topics().topics:
        assert set(topic.producers) | set(topic.consumers) <= SERVICES | EXTERNAL, topic.name


def test_topic_config_is_valid_for_kafka() -> None:
    for topic in load_topics().topics:
        config = topic.kafka_config()
        assert config["cleanup.policy"] in {"delete", "compact", "compact,delete"}
        assert int(config["retention.ms"]) >= -1
