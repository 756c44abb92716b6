"""Avro schema compatibility: can consumers on one schema read events written with another?

Implements the resolution rules of the Avro specification ("Schema Resolution") for a
reader schema and a writer schema, and checks a changed schema against its released
version in both directions:

- backward: consumers on the new schema read events written with the released one
  (fails on a field added without a default, a type changed, an enum symbol removed);
- forward: consumers still on the released schema read new events (fails on a field
  removed that had no default, a type changed, an enum symbol added to an enum
  without a default).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["Compatibility", "Incompatibility", "check_compatibility", "reader_problems"]

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
_NAMED = {"record", "enum", "fixed", "error"}
_KINDS = _PRIMITIVES | _NAMED | {"array", "map"}
# What a missing field or enum symbol means, said from each direction.
_MISSING_FIELD = {
    "backward": "field added without a default: events of the released schema lack it",
    "forward": "field removed that has no default in the released schema",
}
_MISSING_SYMBOLS = {
    "backward": "enum symbols removed",
    "forward": "enum symbols added that consumers of the released schema do not know",
}
# writer type -> reader types that can read it (Avro promotions).
_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


class Compatibility(StrEnum):
    """Which directions a schema change must keep readable."""

    BACKWARD = "backward"
    FORWARD = "forward"
    FULL = "full"


@dataclass(frozen=True)
class Incompatibility:
    """One way a reader cannot read a writer's data.

    Attributes
    ----------
    direction
        ``backward`` (new reads released) or ``forward`` (released reads new).
    path
        Dotted path of the field or type at fault.
    message
        What breaks.
    """

    direction: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.direction}: {self.path}: {self.message}"


def _collect_names(schema: Any, namespace: str, names: dict[str, Any]) -> None:
    if isinstance(schema, list):
        for branch in schema:
            _collect_names(branch, namespace, names)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if kind in _NAMED:
        full = _fullname(schema["name"], schema.get("namespace", namespace))
        names[full] = schema
        namespace = full.rpartition(".")[0]
    for field in schema.get("fields", []):
        _collect_names(field["type"], namespace, names)
    for key in ("items", "values"):
        if key in schema:
            _collect_names(schema[key], namespace, names)
    if isinstance(kind, dict | list):
        _collect_names(kind, namespace, names)


def _fullname(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


class _Resolver:
    """Walks a reader and a writer schema together, collecting what cannot be read."""

    def __init__(self, reader: Any, writer: Any, direction: str) -> None:
        self.reader_names: dict[str, Any] = {}
        self.writer_names: dict[str, Any] = {}
        _collect_names(reader, "", self.reader_names)
        _collect_names(writer, "", self.writer_names)
        self.direction = direction
        self.problems: list[Incompatibility] = []
        self._seen: set[tuple[str, str]] = set()

    def fail(self, path: str, message: str) -> None:
        self.problems.append(Incompatibility(self.direction, path, message))

    def fork(self) -> _Resolver:
        trial = copy.copy(self)
        trial.problems = []
        trial._seen = set(self._seen)
        return trial

    def resolve(self, schema: Any, names: dict[str, Any]) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            match = [full for full in names if full == schema or full.endswith(f".{schema}")]
            return names[match[0]] if match else schema
        if isinstance(schema, dict):
            inner = schema.get("type")
            # {"type": {...}}, {"type": [...]} and {"type": "SomeName"} only wrap a type.
            if isinstance(inner, dict | list) or (isinstance(inner, str) and inner not in _KINDS):
                return self.resolve(inner, names)
        return schema

    def kind(self, schema: Any) -> str:
        if isinstance(schema, list):
            return "union"
        if isinstance(schema, str):
            return schema
        return str(schema["type"])

    def check(self, reader: Any, writer: Any, path: str) -> None:
        reader = self.resolve(reader, self.reader_names)
        writer = self.resolve(writer, self.writer_names)
        if isinstance(writer, list):
            for index, branch in enumerate(writer):
                self.check(reader, branch, f"{path}<union {index}>")
        elif isinstance(reader, list):
            self._check_reader_union(reader, writer, path)
        else:
            self._check_same_kind(reader, writer, path)

    def _readable(self, reader: Any, writer: Any) -> bool:
        trial = self.fork()
        trial.check(reader, writer, "")
        return not trial.problems

    def _check_reader_union(self, reader: list[Any], writer: Any, path: str) -> None:
        if not any(self._readable(branch, writer) for branch in reader):
            self.fail(
                path, f"no branch of the reader's union reads the writer's {self.kind(writer)}"
            )

    def _check_same_kind(self, reader: Any, writer: Any, path: str) -> None:
        reader_kind, writer_kind = self.kind(reader), self.kind(writer)
        if reader_kind != writer_kind:
            if reader_kind not in _PROMOTIONS.get(writer_kind, set()):
                self.fail(path, f"type changed: writer has {writer_kind}, reader has {reader_kind}")
            return
        if _logical(reader) != _logical(writer):
            self.fail(path, f"logical type changed from {_logical(writer)} to {_logical(reader)}")
        if isinstance(reader, dict) and isinstance(writer, dict):
            handler = getattr(self, f"_check_{reader_kind}", None)
            if handler is not None:
                handler(reader, writer, path)

    def _check_array(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> None:
        self.check(reader["items"], writer["items"], f"{path}[]")

    def _check_map(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> None:
        self.check(reader["values"], writer["values"], f"{path}{{}}")

    def _check_fixed(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> None:
        if reader.get("size") != writer.get("size"):
            self.fail(path, f"fixed size changed from {writer.get('size')} to {reader.get('size')}")

    def _check_enum(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> None:
        if not _same_name(reader, writer):
            self.fail(path, f"enum renamed from {writer['name']} to {reader['name']}")
        if "default" in reader:
            return
        missing = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if missing:
            what = _MISSING_SYMBOLS.get(self.direction, "enum symbols the reader lacks")
            self.fail(path, f"{what}: {', '.join(missing)}")

    def _check_record(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> None:
        if not _same_name(reader, writer):
            self.fail(path, f"record renamed from {writer['name']} to {reader['name']}")
            return
        key = (reader["name"], writer["name"])
        if key in self._seen:
            return  # recursive type already being checked
        self._seen.add(key)
        written = {field["name"]: field for field in writer["fields"]}
        for field in reader["fields"]:
            source = _find_field(field, written)
            field_path = f"{path}.{field['name']}" if path else field["name"]
            if source is not None:
                self.check(field["type"], source["type"], field_path)
            elif "default" not in field:
                what = _MISSING_FIELD.get(self.direction, "reader field without default missing")
                self.fail(field_path, what)

    _check_error = _check_record


def _logical(schema: Any) -> Any:
    return schema.get("logicalType") if isinstance(schema, dict) else None


def _same_name(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
    short = writer["name"].rsplit(".", 1)[-1]
    aliases = {alias.rsplit(".", 1)[-1] for alias in reader.get("aliases", [])}
    return reader["name"].rsplit(".", 1)[-1] == short or short in aliases


def _find_field(field: dict[str, Any], written: dict[str, dict[str, Any]]) -> Any:
    for name in [field["name"], *field.get("aliases", [])]:
        if name in written:
            return written[name]
    return None


def reader_problems(
    *, reader: Any, writer: Any, direction: str = "backward"
) -> list[Incompatibility]:
    """List why data written with ``writer`` cannot be read with ``reader``.

    Parameters
    ----------
    reader, writer
        Avro schemas as JSON-like objects (raw ``.avsc`` content).
    direction
        Label put on each problem.

    Returns
    -------
    list[Incompatibility]
        Empty when every datum of ``writer`` resolves against ``reader``.
    """
    resolver = _Resolver(reader, writer, direction)
    resolver.check(reader, writer, "")
    return resolver.problems


def check_compatibility(
    *, released: Any, current: Any, mode: Compatibility = Compatibility.FULL
) -> list[Incompatibility]:
    """List the ways ``current`` breaks consumers of ``released`` (or vice versa).

    Parameters
    ----------
    released
        The last released schema.
    current
        The schema as it is now.
    mode
        ``backward``: new consumers read old events; ``forward``: old consumers read new
        events; ``full``: both (what fedbus requires, as producers and consumers upgrade
        independently).

    Returns
    -------
    list[Incompatibility]
        Empty when the change is compatible.
    """
    problems: list[Incompatibility] = []
    if mode in (Compatibility.BACKWARD, Compatibility.FULL):
        problems += reader_problems(reader=current, writer=released, direction="backward")
    if mode in (Compatibility.FORWARD, Compatibility.FULL):
        problems += reader_problems(reader=released, writer=current, direction="forward")
    return problems
