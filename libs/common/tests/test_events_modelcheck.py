"""The model/schema check notices every kind of drift between a model and its .avsc."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from fedbus.events import JobRequested, UpdateSubmitted
from fedbus.events.modelcheck import schema_mismatches
from fedbus.events.schemas import event_schema_path, load_json


def _schema(event_type: str) -> dict[str, Any]:
    return load_json(event_schema_path(event_type))


def _field(record: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in record["fields"] if f["name"] == name)


def _spec(schema: dict[str, Any]) -> dict[str, Any]:
    spec_type: dict[str, Any] = _field(schema, "spec")["type"]
    return spec_type


def test_the_real_schemas_match() -> None:
    assert schema_mismatches(JobRequested, _schema("job.requested")) == []
    assert schema_mismatches(UpdateSubmitted, _schema("update.submitted")) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda s: _field(s, "tenant").update(name="owner"), "fields"),
        (lambda s: _field(s, "tenant").update(type="bytes"), "JobRequested.tenant"),
        (lambda s: _field(_spec(s), "rounds").update(type="long"), "rounds"),
        (lambda s: _field(_spec(s), "min_clients").pop("default"), "min_clients: default"),
        (lambda s: _field(_spec(s), "min_clients").update(default=2), "min_clients: default"),
        (lambda s: _field(s, "idempotency_key").update(type="string"), "idempotency_key"),
        (lambda s: _field(_spec(s), "mode")["type"]["symbols"].append("hybrid"), "symbols"),
        (lambda s: _field(_spec(s), "training")["type"]["fields"].pop(), "training"),
        (lambda s: _field(_spec(s), "seed").update(type=["null", "int"]), "seed"),
    ],
    ids=[
        "renamed",
        "type",
        "nested-type",
        "default-removed",
        "default-changed",
        "optionality",
        "enum",
        "nested-field",
        "union-branch",
    ],
)
def test_drift_is_reported_with_the_field_path(
    edit: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    schema = copy.deepcopy(_schema("job.requested"))
    edit(schema)

    mismatches = schema_mismatches(JobRequested, schema)

    assert mismatches, "drift went unnoticed"
    assert any(expected in line for line in mismatches), mismatches


def test_docs_and_namespaces_do_not_count_as_drift() -> None:
    schema = copy.deepcopy(_schema("update.submitted"))
    _field(schema, "update")["doc"] = "reworded"
    schema["namespace"] = "org.example"

    assert schema_mismatches(UpdateSubmitted, schema) == []
