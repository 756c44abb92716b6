"""Each schema stays fully compatible with its latest release in schemas/released/."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastavro.schema import to_parsing_canonical_form

from fedbus.events import event_spec, event_types
from fedbus.events.compat import Compatibility, check_compatibility
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
def test_schema_is_fully_compatible_with_its_latest_release(event_type: str) -> None:
    versions = released_versions(event_type)
    assert versions, f"{event_type} has never been released"
    released = load_json(released_schema_path(event_type, versions[-1]))
    current = load_json(event_schema_path(event_type))

    problems = check_compatibility(released=released, current=current, mode=Compatibility.FULL)

    assert [str(p) for p in problems] == []


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
