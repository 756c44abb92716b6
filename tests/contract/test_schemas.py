"""The .avsc files are well-formed, documented, share one envelope, and match the models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema

from fedbus.events import event_spec, event_types, schema_dir
from fedbus.events.modelcheck import normalize_schema, schema_mismatches

pytestmark = pytest.mark.contract

NAMESPACE = "io.fedbus.events"


def _raw(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def _event_files() -> list[Path]:
    return sorted(p for p in schema_dir().glob("*.avsc") if p.name != "envelope.avsc")


def _named_types(schema: Any, found: dict[str, list[Any]]) -> None:
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, found)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum"):
            found.setdefault(schema["name"], []).append(schema)
        for field in schema.get("fields", []):
            _named_types(field["type"], found)
        for key in ("items", "values"):
            if key in schema:
                _named_types(schema[key], found)


def _undocumented(schema: Any, path: str) -> list[str]:
    if isinstance(schema, list):
        return [m for branch in schema for m in _undocumented(branch, path)]
    if not isinstance(schema, dict):
        return []
    missing = [] if schema.get("doc") or schema.get("type") not in ("record", "enum") else [path]
    for field in schema.get("fields", []):
        if not field.get("doc"):
            missing.append(f"{path}.{field['name']}")
        missing += _undocumented(field["type"], f"{path}.{field['name']}")
    for key in ("items", "values"):
        if key in schema:
            missing += _undocumented(schema[key], path)
    return missing


@pytest.mark.parametrize("path", _event_files(), ids=lambda p: p.stem)
def test_schema_parses_in_the_fedbus_namespace(path: Path) -> None:
    raw = _raw(path)

    parse_schema(raw, {})

    assert raw["namespace"] == NAMESPACE
    assert raw["fedbus.event_type"] == path.stem


@pytest.mark.parametrize("path", _event_files(), ids=lambda p: p.stem)
def test_every_record_enum_and_field_is_documented(path: Path) -> None:
    assert _undocumented(_raw(path), path.stem) == []


@pytest.mark.parametrize("path", _event_files(), ids=lambda p: p.stem)
def test_event_starts_with_the_envelope(path: Path) -> None:
    envelope = _raw(schema_dir() / "envelope.avsc")["fields"]

    leading = _raw(path)["fields"][: len(envelope)]

    assert leading == envelope


def test_shared_named_types_are_defined_identically_everywhere() -> None:
    found: dict[str, list[Any]] = {}
    for path in _event_files():
        _named_types(_raw(path), found)

    differing = sorted(
        name
        for name, definitions in found.items()
        if any(d != definitions[0] for d in definitions[1:])
    )

    assert differing == []
    assert len(found["ModelRef"]) >= 5  # one shared record, used wherever weights are


def test_every_schema_file_has_a_registered_model_and_vice_versa() -> None:
    assert sorted(p.stem for p in _event_files()) == sorted(event_types())


@pytest.mark.parametrize("event_type", event_types())
def test_model_matches_its_schema_field_by_field(event_type: str) -> None:
    spec = event_spec(event_type)
    raw = _raw(schema_dir() / f"{event_type}.avsc")

    assert schema_mismatches(spec.model, raw) == []
    assert raw["fedbus.schema_version"] == spec.version
    assert spec.model.event_type() == event_type


def test_normalized_schema_keeps_what_matters_on_the_wire() -> None:
    raw = _raw(schema_dir() / "job.requested.avsc")

    normalized = normalize_schema(raw)

    assert "doc" not in json.dumps(normalized)
    assert normalized["name"] == "JobRequested"
