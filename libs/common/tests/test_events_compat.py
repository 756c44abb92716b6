"""fedbus.events.compat refuses deliberately broken schema changes and allows safe ones."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fedbus.events.compat import Compatibility, check_compatibility, reader_problems

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


def _messages(current: dict[str, Any], mode: Compatibility = Compatibility.FULL) -> list[str]:
    return [str(p) for p in check_compatibility(released=RELEASED, current=current, mode=mode)]


def test_identical_schema_is_compatible() -> None:
    assert _messages(copy.deepcopy(RELEASED)) == []


def test_field_added_without_default_breaks_new_readers() -> None:
    current = _changed(lambda s: s["fields"].append({"name": "extra", "type": "int"}))

    assert _messages(current) == [
        "backward: extra: field added without a default: events of the released schema lack it"
    ]


def test_field_added_with_default_is_compatible() -> None:
    current = _changed(lambda s: s["fields"].append({"name": "extra", "type": "int", "default": 0}))

    assert _messages(current) == []


def test_field_removed_without_default_breaks_old_readers() -> None:
    current = _changed(lambda s: s["fields"].remove(_field(s, "count")))

    assert _messages(current) == [
        "forward: count: field removed that has no default in the released schema"
    ]


def test_field_removed_that_had_a_default_is_compatible() -> None:
    assert _messages(_changed(lambda s: s["fields"].remove(_field(s, "note")))) == []


def test_type_change_breaks_both_directions() -> None:
    current = _changed(lambda s: _field(s, "count").update(type="string"))

    messages = _messages(current)

    assert len(messages) == 2
    assert all("count: type changed" in m for m in messages)


def test_promotion_is_backward_but_not_forward_compatible() -> None:
    current = _changed(lambda s: _field(s, "count").update(type="long"))

    assert _messages(current, Compatibility.BACKWARD) == []
    assert _messages(current, Compatibility.FORWARD) == [
        "forward: count: type changed: writer has long, reader has int"
    ]


def test_enum_symbol_removed_breaks_new_readers() -> None:
    current = _changed(lambda s: _field(s, "kind")["type"]["symbols"].remove("b"))

    assert _messages(current) == ["backward: kind: enum symbols removed: b"]


def test_enum_symbol_added_breaks_old_readers_unless_the_enum_has_a_default() -> None:
    current = _changed(lambda s: _field(s, "kind")["type"]["symbols"].append("c"))
    assert len(_messages(current)) == 1
    assert "forward: kind: enum symbols added" in _messages(current)[0]

    with_default = copy.deepcopy(RELEASED)
    _field(with_default, "kind")["type"]["default"] = "a"
    problems = check_compatibility(released=with_default, current=current)
    assert [p for p in problems if p.direction == "forward"] == []


def test_nested_record_change_is_found_through_named_references() -> None:
    current = _changed(lambda s: _field(s, "ref")["type"]["fields"][1].update(type="string"))

    messages = _messages(current)

    assert "backward: ref.size: type changed: writer has long, reader has string" in messages
    assert "forward: ref.size: type changed: writer has string, reader has long" in messages


def test_optional_field_made_required_breaks_old_data() -> None:
    current = _changed(lambda s: _field(s, "note").update(type="string", default="x"))

    assert _messages(current, Compatibility.BACKWARD) == [
        "backward: note<union 0>: type changed: writer has null, reader has string"
    ]


def test_logical_type_change_is_refused() -> None:
    current = _changed(lambda s: _field(s, "at").update(type="long"))

    assert any("logical type changed" in m for m in _messages(current))


def test_record_rename_is_refused_unless_aliased() -> None:
    renamed = _changed(lambda s: s.update(name="Other"))
    aliased = _changed(lambda s: s.update(name="Other", aliases=["Thing"]))

    assert _messages(renamed, Compatibility.BACKWARD) != []
    assert _messages(aliased, Compatibility.BACKWARD) == []


@pytest.mark.parametrize(
    ("writer", "reader", "ok"),
    [
        ("int", "long", True),
        ("long", "int", False),
        ("string", "bytes", True),
        ("null", "int", False),
    ],
)
def test_primitive_promotions_follow_the_avro_spec(writer: str, reader: str, ok: bool) -> None:
    assert (reader_problems(reader=reader, writer=writer) == []) is ok
