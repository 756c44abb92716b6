"""Each schema stays compatible with every release in schemas/released/, by Avro's own checker."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from fastavro.schema import to_parsing_canonical_form

from fedbus.events import event_spec, event_types
from fedbus.events.schemas import (
    event_schema_path,
    load_json,
    released_schema_path,
    released_versions,
)

pytestmark = pytest.mark.contract


def _canonical(schema: dict[str, Any]) -> str:
    return str(to_parsing_canonical_form(schema))


@pytest.mark.parametrize("event_type", event_types())
def test_schema_is_fully_compatible_with_its_latest_release(
    event_type: str, compatibility: Callable[..., list[str]]
) -> None:
    versions = released_versions(event_type)
    assert versions, f"{event_type} has never been released"
    released = load_json(released_schema_path(event_type, versions[-1]))
    current = load_json(event_schema_path(event_type))

    problems = compatibility(released=released, current=current, mode="full")

    assert problems == []


@pytest.mark.parametrize("event_type", event_types())
def test_every_release_and_the_current_schema_read_each_other(
    event_type: str, readable: Callable[..., list[str]]
) -> None:
    # Consumers of any version read events of any other: a consumer may lag several
    # releases behind, not only one.
    schemas = {
        f"v{v}": load_json(released_schema_path(event_type, v))
        for v in released_versions(event_type)
    }
    schemas["current"] = load_json(event_schema_path(event_type))

    problems = {
        (reader, writer): found
        for (reader, r), (writer, w) in itertools.product(schemas.items(), repeat=2)
        if (found := readable(reader=r, writer=w))
    }

    assert problems == {}


@pytest.mark.parametrize("event_type", event_types())
def test_a_changed_schema_bumps_its_version(event_type: str) -> None:
    latest = released_versions(event_type)[-1]
    released = load_json(released_schema_path(event_type, latest))
    current = load_json(event_schema_path(event_type))

    unchanged = _canonical(released) == _canonical(current)

    expected = latest if unchanged else latest + 1
    assert current["fedbus.schema_version"] == expected
    assert event_spec(event_type).version == expected


def test_first_release_is_version_one() -> None:
    assert all(released_versions(t)[0] == 1 for t in event_types())
    assert json.dumps(load_json(released_schema_path("job.requested", 1)))
