"""Apache Avro's checker (see conftest.py) refuses broken schema changes and allows safe ones.

The cases the hand-written checker that lived in ``fedbus.events.compat`` was tested with,
now asked of ``avro.compatibility``; each problem reads ``<location>: <message>``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.contract

Problems = Callable[..., list[str]]

RELEASED: dict[str, Any] = {
    "type": "record",
    "name": "Thing",
    "namespace": "io.fedbus.events",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "count", "type": "int"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["a", "b"]}},
        {
            "name": "ref",
            "type": {
                "type": "record",
                "name": "Ref",
                "fields": [{"name": "key", "type": "string"}, {"name": "size", "type": "long"}],
            },
        },
        {"name": "other", "type": ["null", "Ref"], "default": None},
        {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}


def _changed(edit: Any) -> dict[str, Any]:
    schema = copy.deepcopy(RELEASED)
    edit(schema)
    return schema


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


@pytest.fixture
def messages(compatibility: Problems) -> Callable[..., list[str]]:
    def check(current: dict[str, Any], mode: str = "full") -> list[str]:
        return compatibility(released=RELEASED, current=current, mode=mode)

    return check


def test_identical_schema_is_compatible(messages: Problems) -> None:
    assert messages(copy.deepcopy(RELEASED)) == []


def test_field_added_without_default_breaks_new_readers(messages: Problems) -> None:
    current = _changed(lambda s: s["fields"].append({"name": "extra", "type": "int"}))

    assert messages(current) == ["backward: /fields/8: extra"]


def test_field_added_with_default_is_compatible(messages: Problems) -> None:
    current = _changed(lambda s: s["fields"].append({"name": "extra", "type": "int", "default": 0}))

    assert messages(current) == []


def test_field_removed_without_default_breaks_old_readers(messages: Problems) -> None:
    current = _changed(lambda s: s["fields"].remove(_field(s, "count")))

    assert messages(current) == ["forward: /|/fields/1: count"]


def test_field_removed_that_had_a_default_is_compatible(messages: Problems) -> None:
    assert messages(_changed(lambda s: s["fields"].remove(_field(s, "note")))) == []


def test_type_change_breaks_both_directions(messages: Problems) -> None:
    current = _changed(lambda s: _field(s, "count").update(type="string"))

    assert messages(current) == [
        "backward: /|/fields/1/type: reader type: string not compatible with writer type: int",
        "forward: /|/fields/1/type: reader type: int not compatible with writer type: string",
    ]


def test_promotion_is_backward_but_not_forward_compatible(messages: Problems) -> None:
    current = _changed(lambda s: _field(s, "count").update(type="long"))

    assert messages(current, "backward") == []
    assert messages(current, "forward") == [
        "forward: /|/fields/1/type: reader type: int not compatible with writer type: long"
    ]


def test_enum_symbol_removed_breaks_new_readers(messages: Problems) -> None:
    current = _changed(lambda s: _field(s, "kind")["type"]["symbols"].remove("b"))

    assert messages(current) == ["backward: /|/fields/3/type/symbols: {'b'}"]


def test_enum_symbol_added_breaks_old_readers_unless_the_enum_has_a_default(
    compatibility: Problems,
) -> None:
    current = _changed(lambda s: _field(s, "kind")["type"]["symbols"].append("c"))
    assert compatibility(released=RELEASED, current=current) == [
        "forward: /|/fields/3/type/symbols: {'c'}"
    ]

    with_default = copy.deepcopy(RELEASED)
    _field(with_default, "kind")["type"]["default"] = "a"
    problems = compatibility(released=with_default, current=current)
    assert [p for p in problems if p.startswith("forward")] == []


def test_nested_record_change_is_found_through_named_references(messages: Problems) -> None:
    current = _changed(lambda s: _field(s, "ref")["type"]["fields"][1].update(type="string"))

    found = messages(current)

    size = "/fields/4/type/fields/1/type"
    assert any(
        "backward: " in m and size in m and "string not compatible with writer type: long" in m
        for m in found
    )
    assert any(
        "forward: " in m and size in m and "long not compatible with writer type: string" in m
        for m in found
    )
    # ... and through the union that names Ref.
    assert any(
        "/fields/5/type/1" in m and "reader union lacking writer type: RECORD" in m for m in found
    )


def test_optional_field_made_required_breaks_old_data(messages: Problems) -> None:
    current = _changed(lambda s: _field(s, "note").update(type="string", default="x"))

    assert messages(current, "backward") == [
        "backward: /: reader type: string not compatible with writer type: null"
    ]


def test_logical_type_change_is_compatible_as_the_avro_spec_says(messages: Problems) -> None:
    # The hand-written checker refused this; Avro resolves by the underlying type (a long
    # either way), as its Java checker does. A changed schema still bumps its version
    # (test_released.py) and its model still matches it field by field (test_schemas.py).
    current = _changed(lambda s: _field(s, "at").update(type="long"))

    assert messages(current) == []


def test_record_rename_is_refused_unless_aliased(messages: Problems) -> None:
    renamed = _changed(lambda s: s.update(name="Other"))
    aliased = _changed(lambda s: s.update(name="Other", aliases=["Thing"]))
    aliased_in_full = _changed(lambda s: s.update(name="Other", aliases=["io.fedbus.events.Thing"]))

    assert messages(renamed, "backward") == ["backward: /|/name: expected: io.fedbus.events.Thing"]
    assert messages(aliased, "backward") == []
    assert messages(aliased_in_full, "backward") == []


def test_avro_alone_misreads_a_relative_alias(readable: Problems) -> None:
    # The one case found where avro.compatibility 1.12.2 departs from the Avro spec: an
    # alias without a dot is relative to the type's namespace, but the library compares it
    # with the writer's full name as written. conftest.qualify_aliases writes it in full.
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
    from avro.schema import parse

    aliased = _changed(lambda s: s.update(name="Other", aliases=["Thing"]))
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    raw = checker.get_compatibility(parse(json.dumps(aliased)), parse(json.dumps(RELEASED)))

    assert raw.compatibility is SchemaCompatibilityType.incompatible
    assert readable(reader=aliased, writer=RELEASED) == []


@pytest.mark.parametrize(
    ("writer", "reader", "ok"),
    [
        ("int", "long", True),
        ("long", "int", False),
        ("string", "bytes", True),
        ("bytes", "string", True),
        ("int", "float", True),
        ("long", "double", True),
        ("null", "int", False),
    ],
)
def test_primitive_promotions_follow_the_avro_spec(
    readable: Problems, writer: str, reader: str, ok: bool
) -> None:
    assert (readable(reader=reader, writer=writer) == []) is ok


def test_no_runtime_package_imports_avro() -> None:
    # avro is a development dependency: only these contract tests may use it.
    repo = Path(__file__).resolve().parents[2]
    sources = [*repo.glob("libs/*/src/**/*.py"), *repo.glob("services/*/src/**/*.py")]
    importing = [
        str(path.relative_to(repo))
        for path in sources
        if re.search(r"^\s*(import avro\b|from avro\b)", path.read_text(), re.MULTILINE)
    ]

    assert sources
    assert importing == []
