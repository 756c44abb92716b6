"""Field-by-field check that a pydantic event model matches its ``.avsc``.

The ``.avsc`` files are the contract; the models are hand-written for good typing. This
module derives the Avro schema a model stands for (names, types, optionality, defaults,
enum symbols, nested records; docs aside) and lists every difference from the file, so
the contract tests fail the moment the two drift apart.
"""

from __future__ import annotations

import types
import typing
from enum import Enum
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from fedbus.events.envelope import AvroType
from fedbus.events.records import AVRO_ENUM_DEFAULTS

__all__ = ["model_avro_schema", "normalize_schema", "schema_mismatches"]

_PLAIN = {str: "string", float: "double", bool: "boolean", bytes: "bytes"}
# Avro attributes that do not change what a reader or writer does.
_IGNORED_KEYS = {"doc", "namespace", "aliases", "order"}


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _avro_of(annotation: Any, metadata: list[Any], defined: set[str]) -> Any:
    marker = next((m for m in metadata if isinstance(m, AvroType)), None)
    if marker is not None:
        return marker.schema
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is typing.Annotated:
        return _avro_of(args[0], list(args[1:]), defined)
    if origin in (Union, types.UnionType):
        branches = [arg for arg in args if arg is not type(None)]
        prefix = ["null"] if len(branches) < len(args) else []
        return prefix + [_avro_of(arg, [], defined) for arg in branches]
    if origin is list:
        return {"type": "array", "items": _avro_of(args[0], [], defined)}
    if origin is dict:
        return {"type": "map", "values": _avro_of(args[1], [], defined)}
    if origin is Literal:
        return "string"
    return _avro_of_class(annotation, defined)


def _avro_of_class(cls: Any, defined: set[str]) -> Any:
    if cls in _PLAIN:
        return _PLAIN[cls]
    if isinstance(cls, type) and issubclass(cls, Enum):
        if cls.__name__ in defined:
            return cls.__name__
        defined.add(cls.__name__)
        enum: dict[str, Any] = {"type": "enum", "name": cls.__name__}
        enum["symbols"] = [m.value for m in cls]
        if cls in AVRO_ENUM_DEFAULTS:
            enum["default"] = AVRO_ENUM_DEFAULTS[cls]
        return enum
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        if cls.__name__ in defined:
            return cls.__name__
        defined.add(cls.__name__)
        return {"type": "record", "name": cls.__name__, "fields": _fields_of(cls, defined)}
    raise TypeError(f"no Avro type for {cls!r}: use Int32, Int64, UtcDatetime or a model")


def _default_of(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return to_jsonable_python(info.default_factory())  # type: ignore[call-arg]
    if info.default is PydanticUndefined:
        return PydanticUndefined
    return to_jsonable_python(info.default)


def _fields_of(model: type[BaseModel], defined: set[str]) -> list[dict[str, Any]]:
    fields = []
    for name, info in model.model_fields.items():
        field: dict[str, Any] = {
            "name": name,
            "type": _avro_of(info.annotation, list(info.metadata), defined),
        }
        default = _default_of(info)
        # The ``type`` of an event is pinned by its Literal default, not an Avro default.
        if default is not PydanticUndefined and get_origin(info.annotation) is not Literal:
            field["default"] = default
        fields.append(field)
    return fields


def model_avro_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Return the Avro schema (without docs or namespaces) that ``model`` stands for."""
    schema = _avro_of_class(model, set())
    if not isinstance(schema, dict):
        raise TypeError(f"{model.__name__} is not a record")
    return schema


def normalize_schema(schema: Any) -> Any:
    """Return ``schema`` without docs, namespaces and custom attributes, names shortened."""
    if isinstance(schema, str):
        return _short(schema)
    if isinstance(schema, list):
        return [normalize_schema(branch) for branch in schema]
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _IGNORED_KEYS or key.startswith(("fedbus.", "__")):
            continue
        if key in ("type", "items", "values"):
            result[key] = normalize_schema(value)
        elif key == "fields":
            result[key] = [normalize_schema(field) for field in value]
        elif key == "name":
            result[key] = _short(value)
        else:
            result[key] = value
    if set(result) == {"type"}:
        return result["type"]
    return result


def _compare(expected: Any, actual: Any, path: str, out: list[str]) -> None:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted((set(expected) | set(actual)) - {"fields"}):
            if expected.get(key) != actual.get(key):
                _compare_value(key, expected.get(key), actual.get(key), path, out)
        if "fields" in expected or "fields" in actual:
            _compare_fields(expected.get("fields", []), actual.get("fields", []), path, out)
    elif isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for index, (left, right) in enumerate(zip(expected, actual, strict=True)):
            _compare(left, right, f"{path}[{index}]", out)
    elif expected != actual:
        out.append(f"{path}: schema says {expected!r}, model says {actual!r}")


def _compare_value(key: str, expected: Any, actual: Any, path: str, out: list[str]) -> None:
    if key in ("type", "items", "values"):
        _compare(expected, actual, f"{path}<{key}>", out)
    else:
        out.append(f"{path}: {key}: schema says {expected!r}, model says {actual!r}")


def _compare_fields(expected: list[Any], actual: list[Any], path: str, out: list[str]) -> None:
    names_expected = [field["name"] for field in expected]
    names_actual = [field["name"] for field in actual]
    if names_expected != names_actual:
        out.append(f"{path}: fields: schema has {names_expected}, model has {names_actual}")
        return
    for left, right in zip(expected, actual, strict=True):
        _compare(left, right, f"{path}.{left['name']}", out)


def schema_mismatches(model: type[BaseModel], schema: dict[str, Any]) -> list[str]:
    """List every difference between ``model`` and its Avro ``schema`` (raw or parsed).

    Returns
    -------
    list[str]
        One line per difference, naming the field path; empty when they match.
    """
    out: list[str] = []
    _compare(normalize_schema(schema), model_avro_schema(model), model.__name__, out)
    return out
