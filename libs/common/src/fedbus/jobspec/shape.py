"""A job spec as JSON, checked as strictly as its Avro schema: no unknown field, no coercion."""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from fedbus.events.envelope import Record, check_storable
from fedbus.events.jobs import JobSpec
from fedbus.jobspec.problems import MAX_PROBLEMS, ProblemCode, SpecProblem, did_you_mean, shown
from fedbus.jobspec.rules import spec_problems

__all__ = ["check_spec"]

_MISSING = {"missing"}
_TYPE_ERRORS = {"json_invalid", "json_type", "model_type", "model_attributes_type", "dict_type"}


def check_spec(raw: object, *, root: str = "spec") -> list[SpecProblem]:
    """Every problem of a job spec given as JSON (decoded); an empty list means it may run.

    Three passes: unknown fields (at every level, with "did you mean" where a known name is
    close), types as strict as the Avro schema (no bool or string for a number, integers in
    the range of their Avro ``int`` or ``long``), then, when the types are right, the
    semantic rules of :func:`~fedbus.jobspec.spec_problems`.

    Parameters
    ----------
    raw
        The spec, as ``json.loads`` gives it.
    root
        The first segment of every problem's path (``spec.rounds``).

    Returns
    -------
    list[SpecProblem]
        At most :data:`~fedbus.jobspec.problems.MAX_PROBLEMS` problems.
    """
    if not isinstance(raw, Mapping):
        return [SpecProblem(ProblemCode.INVALID_TYPE, (root,), "a job spec is a JSON object")]
    problems = _unknown(JobSpec, raw, (root,))
    spec, typing = _typed(raw, root)
    problems += typing
    if spec is not None:  # unknown fields are left out of ``spec``: its rules still apply
        problems += [
            SpecProblem(p.code, (root, *p.loc[1:]), p.message) for p in spec_problems(spec)
        ]
    return problems[:MAX_PROBLEMS]


def _unknown(
    model: type[BaseModel], raw: Mapping[Any, Any], loc: tuple[str, ...]
) -> list[SpecProblem]:
    fields = model.model_fields
    out = []
    for key, value in raw.items():
        name = str(key)
        field = fields.get(name)
        if field is None:
            what = f"fields of {'.'.join(loc)}"
            message = f"unknown field '{shown(name)}'; {did_you_mean(name, fields, what=what)}"
            out.append(SpecProblem(ProblemCode.UNKNOWN_FIELD, (*loc, shown(name)), message))
        elif (nested := _record(field.annotation)) is not None and isinstance(value, Mapping):
            out += _unknown(nested, value, (*loc, name))
        if len(out) >= MAX_PROBLEMS:
            break
    return out


def _record(annotation: object) -> type[Record] | None:
    """The record type of a field, also of an optional one (``LoraSpec | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, Record):
        return annotation
    records = [
        a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, Record)
    ]
    return records[0] if len(records) == 1 else None


def _typed(raw: Mapping[Any, Any], root: str) -> tuple[JobSpec | None, list[SpecProblem]]:
    try:
        text = json.dumps(raw, allow_nan=True)
    except (TypeError, ValueError) as exc:
        return None, [SpecProblem(ProblemCode.INVALID_TYPE, (root,), f"not JSON: {exc}")]
    try:
        # Strict JSON validation: what the codec applies to an event read from the bus.
        return JobSpec.model_validate_json(text, strict=True), []
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if any(err["type"] == "json_invalid" for err in errors):
            # json.dumps escapes a lone surrogate, which pydantic's JSON parser refuses whole.
            located = _unstorable(raw, (root,))
            if located:
                return None, located
        return None, [_from_pydantic(err, root) for err in errors]


def _unstorable(value: object, loc: tuple[str, ...]) -> list[SpecProblem]:
    """Every string (key or value) of ``value`` that :func:`check_storable` refuses, located."""
    if isinstance(value, str):
        try:
            check_storable(value)
        except PydanticCustomError as exc:
            return [SpecProblem(ProblemCode.INVALID_VALUE, loc, exc.message())]
        return []
    items: list[tuple[object, object]] = (
        list(value.items()) if isinstance(value, Mapping)
        else list(enumerate(value)) if isinstance(value, list) else []
    )  # fmt: skip
    out: list[SpecProblem] = []
    for key, item in items:
        # The key is shown escaped: a path with a surrogate in it could not be sent as UTF-8.
        name = shown(str(key).encode("utf-8", "backslashreplace").decode())
        out += _unstorable(key, (*loc, name, "[key]")) if isinstance(key, str) else []
        out += _unstorable(item, (*loc, name))
    return out


def _from_pydantic(err: ErrorDetails, root: str) -> SpecProblem:
    loc = (root, *(shown(str(part)) for part in err["loc"]))
    kind = err["type"]
    if kind in _MISSING:
        return SpecProblem(ProblemCode.MISSING_FIELD, loc, f"{loc[-1]} is required")
    if kind in _TYPE_ERRORS or kind.endswith(("_type", "_parsing")):
        message = f"{err['msg']}, got {_json_kind(err['input'])}"
        return SpecProblem(ProblemCode.INVALID_TYPE, loc, message)
    return SpecProblem(ProblemCode.INVALID_VALUE, loc, err["msg"])


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {json.dumps(value)}"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {shown(json.dumps(value))}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    return "an array" if isinstance(value, list) else "an object"
