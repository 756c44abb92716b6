"""Every event round-trips through its Avro schema, JSON and binary; examples decode."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.validation import validate

from fedbus.events import AVRO_MAGIC, decode, encode, event_spec, event_types, schema_dir, to_datum

pytestmark = pytest.mark.contract


def _example(event_type: str) -> dict[str, Any]:
    path = schema_dir() / "examples" / f"{event_type}.json"
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def _without_defaulted_fields(datum: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    defaulted = {field["name"] for field in schema["fields"] if "default" in field}
    return {key: value for key, value in datum.items() if key not in defaulted}


def test_every_event_type_has_a_golden_example() -> None:
    examples = sorted(p.stem for p in (schema_dir() / "examples").glob("*.json"))

    assert examples == sorted(event_types())


@pytest.mark.parametrize("event_type", event_types())
def test_golden_example_validates_and_decodes(event_type: str) -> None:
    example = _example(event_type)
    spec = event_spec(event_type)

    assert validate(example, parse_schema(spec.schema), raise_errors=True)
    event = decode(json.dumps(example).encode())

    assert isinstance(event, spec.model)
    assert to_datum(event) == example


@pytest.mark.parametrize("event_type", event_types())
def test_datum_round_trips_through_fastavro_binary(event_type: str) -> None:
    datum = to_datum(decode(json.dumps(_example(event_type)).encode()))
    schema = event_spec(event_type).schema
    buffer = io.BytesIO()

    schemaless_writer(buffer, schema, datum)
    buffer.seek(0)
    read = schemaless_reader(buffer, schema, None)

    assert event_spec(event_type).model.model_validate(read) == decode(json.dumps(datum).encode())


@pytest.mark.parametrize("event_type", event_types())
@pytest.mark.parametrize("fmt", ["json", "avro"])
def test_event_round_trips_through_the_codec(event_type: str, fmt: str) -> None:
    event = decode(json.dumps(_example(event_type)).encode())

    raw = encode(event, fmt)

    assert raw.startswith(AVRO_MAGIC if fmt == "avro" else b"{")
    assert decode(raw) == event


@pytest.mark.parametrize("event_type", event_types())
@pytest.mark.parametrize("fmt", ["json", "avro"])
def test_event_with_only_required_fields_round_trips(event_type: str, fmt: str) -> None:
    spec = event_spec(event_type)
    minimal = _without_defaulted_fields(_example(event_type), spec.schema)

    event = decode(json.dumps(minimal).encode())

    assert decode(encode(event, fmt)) == event
    for field in spec.schema["fields"]:
        if "default" in field and field["name"] != "type":
            assert to_datum(event)[field["name"]] == field["default"], field["name"]
