"""Text that PostgreSQL can store: no NUL character, no unpaired surrogate.

:class:`~fedbus.events.Record` runs its core schema through :func:`storable_strings`, so every
string of every event is checked where it enters (a field, a list item, a map key or value)
and pydantic reports a refusal at that location. API parameters use :data:`StorableText`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError, SchemaValidator, core_schema

__all__ = ["StorableText", "check_storable", "storable_strings"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def check_storable(text: str) -> str:
    """Return ``text`` if PostgreSQL (and UTF-8) can hold it; raise otherwise.

    Refuses NUL (U+0000), which no PostgreSQL ``text`` or ``jsonb`` value holds, and
    surrogate code points (U+D800..U+DFFF), which no UTF-8 text holds. A pair of surrogate
    escapes in JSON (``"\\ud83d\\ude00"``) decodes to one code point and is accepted.

    Raises
    ------
    pydantic_core.PydanticCustomError
        ``string_nul`` or ``string_surrogate``; inside a model, pydantic reports it as a
        ``ValidationError`` located at the string (a field, a list index, a dict key).
    """
    # Both tests run in C; the regular expression only for the rarer non-ASCII text.
    if "\x00" in text:
        raise PydanticCustomError("string_nul", "contains a NUL character, which cannot be stored")
    if not text.isascii() and _SURROGATE.search(text) is not None:
        raise PydanticCustomError(
            "string_surrogate", "contains an unpaired surrogate, which cannot be stored"
        )
    return text


def _all_storable(texts: Iterable[str]) -> bool:
    joined = "".join(texts)
    return "\x00" not in joined and (joined.isascii() or _SURROGATE.search(joined) is None)


StorableText = Annotated[str, AfterValidator(check_storable)]
"""A ``str`` that PostgreSQL can store: for API parameters and models outside a Record."""

_MARK = "fedbus_storable"
"""Metadata key of a schema this module made: walking it again leaves it as it is."""
# Keys of a core schema that hold other validation schemas (not serialization or metadata),
# one schema or a list of them, or a mapping of names to them.
_SUBSCHEMA_KEYS = frozenset(
    {"schema", "items_schema", "keys_schema", "values_schema", "choices", "steps", "definitions",
     "json_schema", "python_schema", "extras_schema", "arguments_schema"}
)  # fmt: skip
_SCHEMA_MAPS = frozenset({"fields", "choices"})
_ITEM_KEYS = ("items_schema", "keys_schema", "values_schema")


def storable_strings(schema: Any) -> Any:
    """``schema`` with every ``str`` in it checked by :func:`check_storable`.

    A ``str`` schema is followed by the check. A list of strings, or a map with string keys or
    values, is checked as a whole (one ``join``, one scan) and item by item only when that
    finds something, so the error still names the index or key: a long ``participants`` list
    costs one call, not one per item. Walks validation schemas only (not serialization or
    metadata); a schema already checked (a nested record's, which pydantic reuses) is kept.
    """
    if isinstance(schema, list | tuple):
        return type(schema)(storable_strings(item) for item in schema)
    if not isinstance(schema, dict) or _MARK in (schema.get("metadata") or {}):
        return schema
    kind = schema.get("type")
    if kind == "str":
        return _checked_str(schema)
    if kind == "list" and _is_str(schema.get("items_schema")):
        return _checked_container(schema, lambda items: items)
    if kind == "dict" and _is_str(schema.get("keys_schema")):
        if _is_str(schema.get("values_schema")):
            return _checked_container(schema, lambda d: (*d.keys(), *d.values()))
        return _checked_container(schema, lambda d: d.keys())
    walked = dict(schema)
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):  # model fields, tagged choices
            walked[key] = {name: storable_strings(item) for name, item in value.items()}
        elif key in _SUBSCHEMA_KEYS:
            walked[key] = storable_strings(value)
    return walked


def _is_str(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "str" and "ref" not in schema


def _checked_str(schema: dict[str, Any]) -> dict[str, Any]:
    inner = {key: value for key, value in schema.items() if key != "ref"}
    checked = core_schema.no_info_after_validator_function(
        check_storable, inner, metadata={_MARK: True}
    )
    return {**checked, "ref": schema["ref"]} if "ref" in schema else dict(checked)


def _checked_container(
    schema: dict[str, Any], texts: Callable[[Any], Iterable[str]]
) -> dict[str, Any]:
    # Run only to locate what the scan found: the same container with each string checked
    # and the rest taken as it is (validated already; it may refer to definitions that a
    # validator of its own would lack).
    parts = {
        key: _checked_str(schema[key]) if _is_str(schema[key]) else core_schema.any_schema()
        for key in _ITEM_KEYS
        if key in schema
    }
    locate = SchemaValidator({"type": schema["type"], **parts})

    def check(validated: Any) -> Any:
        if not _all_storable(texts(validated)):
            locate.validate_python(validated)  # raises, located at the index or key
        return validated

    return dict(core_schema.no_info_after_validator_function(check, schema, metadata={_MARK: True}))
