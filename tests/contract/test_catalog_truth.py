"""topics.yaml's producer and consumer lists say what each service really does.

The lists are the source of the Kafka ACLs (fedbus.bus.acls), so a wrong line is a wrong
permission: a consumer missing from the catalog is refused by the broker, a producer listed
by mistake may forge events. Consumers must equal the service's routing table
(``HANDLERS.topics``); producers are checked against the event classes its source names.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import fedbus.events as events
from fedbus.bus.routing import Routes
from fedbus.events import load_topics

pytestmark = pytest.mark.contract

PACKAGES = {
    "gateway": "fedbus_gateway",
    "orchestration": "fedbus_orchestration",
    "trainer": "fedbus_trainer",
    "aggregator": "fedbus_aggregator",
    "privacy-accountant": "fedbus_accountant",
    "model-registry": "fedbus_registry",
}
EVENT_CLASSES = {
    name: obj.event_type()
    for name, obj in vars(events).items()
    if isinstance(obj, type) and issubclass(obj, events.Event) and obj is not events.Event
}
EVENT_CLASSES.pop("DeadLetter", None)  # every consumer publishes dead letters: checked apart


def routes(service: str) -> Routes[object]:
    table = importlib.import_module(f"{PACKAGES[service]}.handlers").HANDLERS
    assert isinstance(table, Routes)
    return table


def named_event_types(service: str) -> set[str]:
    """Event types whose class the service's source names anywhere except in an import."""
    root = Path(importlib.import_module(PACKAGES[service]).__file__ or "").parent
    found: set[str] = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = node.id if isinstance(node, ast.Name) else None
            name = node.attr if isinstance(node, ast.Attribute) else name
            if name in EVENT_CLASSES:
                found.add(EVENT_CLASSES[name])
    return found


def catalog_topics(service: str, role: str) -> set[str]:
    return {t.name for t in load_topics().event_topics() if service in getattr(t, role)}


def read_topics(service: str) -> set[str]:
    """What the service's runner reads: each routed event type's topic, and every topic family
    carrying a routed type (``ServiceRuntime.run`` subscribes to their members)."""
    types = set(routes(service).topics)
    return types | {f.name for f in load_topics().families_carrying(types)}


@pytest.mark.parametrize("service", sorted(PACKAGES))
def test_consumers_are_exactly_what_the_routing_table_reads(service: str) -> None:
    assert catalog_topics(service, "consumers") == read_topics(service)


def test_only_an_outside_producer_writes_its_own_intake_and_only_the_gateway_the_requests() -> None:
    catalog = load_topics()
    assert catalog.get("job.requested").producers == ["gateway"]
    assert catalog.get("job.cancel.requested").producers == ["gateway"]
    for name in ("upstream.job.requested", "upstream.job.cancel.requested"):
        family = catalog.get(name)
        assert (family.addressed_by, family.writer, family.producers) == (
            "tenant",
            "upstream-{}",
            ["upstream"],
        )


@pytest.mark.parametrize("service", sorted(PACKAGES))
def test_producers_cover_every_event_the_service_builds(service: str) -> None:
    consumed = set(routes(service).topics)
    produced = catalog_topics(service, "producers")

    built = named_event_types(service) - consumed
    assert built <= produced, f"{service} names {sorted(built - produced)}, not its producers"
    assert produced <= named_event_types(service), f"{service} never names {produced}"


def test_dead_letters_are_produced_by_exactly_the_consumers_of_their_topic() -> None:
    catalog = load_topics()
    for topic in catalog.event_topics():
        services = {c for c in topic.consumers if c in PACKAGES}
        assert set(catalog.dead_letter_topic(topic.name).producers) == services, topic.name


def test_no_trainer_reads_the_updates_of_others() -> None:
    assert "trainer" not in load_topics().get("update.submitted").consumers
