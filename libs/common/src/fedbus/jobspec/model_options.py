"""``model_options`` against a model's options schema, without the model (no torch).

A model plugin's options are a pydantic model (``fedbus_executor.plugins``); its JSON Schema
(``options.model_json_schema()``, listed by ``fedbus models available --json`` and
``fedbus_executor.plugins.capabilities()``) can travel to a process that cannot import the
plugin, such as orchestration. :func:`model_options_problems` checks options against that
schema for the keywords pydantic writes for flat option models: ``properties``,
``required``, ``additionalProperties: false``, ``type``, ``anyOf``, ``enum``, ``const``,
``items``, ``minItems``/``maxItems``, ``minimum``/``maximum`` and their exclusive forms,
``multipleOf``, ``minLength``/``maxLength``. A keyword it does not know is not checked (the
trainers' build, with pydantic, still is), so it may accept what the plugin refuses, never
the other way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fedbus.jobspec.problems import ProblemCode, SpecProblem, did_you_mean, shown

__all__ = ["model_options_problems"]

_ROOT = ("spec", "model_options")


def model_options_problems(
    model: str, options: Mapping[str, Any], schema: Mapping[str, Any]
) -> list[SpecProblem]:
    """Every option of ``options`` the model's options ``schema`` refuses, at its name.

    Parameters
    ----------
    model
        The model's name, for the messages.
    options
        ``JobSpec.model_options``.
    schema
        The JSON Schema of the model's options (a pydantic model's ``model_json_schema()``).

    Returns
    -------
    list[SpecProblem]
        ``unknown_field`` for an option the schema does not have (when it is closed),
        ``missing_field`` for a required one, ``invalid_value`` for a value it refuses.
    """
    properties: Mapping[str, Any] = schema.get("properties", {})
    closed = schema.get("additionalProperties") is False
    out = []
    for key, value in options.items():
        loc = (*_ROOT, shown(key))
        prop = properties.get(key)
        if prop is None:
            if closed:
                hint = did_you_mean(key, properties, what=f"options of {model}")
                message = f"model {model!r} has no option '{shown(key)}'; {hint}"
                out.append(SpecProblem(ProblemCode.UNKNOWN_FIELD, loc, message))
            continue
        why = _refused(value, prop)
        if why is not None:
            message = f"option {key} of model {model!r}: {why}"
            out.append(SpecProblem(ProblemCode.INVALID_VALUE, loc, message))
    for key in schema.get("required", []):
        if key not in options:
            message = f"model {model!r} needs option {key}"
            out.append(SpecProblem(ProblemCode.MISSING_FIELD, (*_ROOT, shown(key)), message))
    return out


def _type_ok(value: Any, kind: str) -> bool:
    match kind:
        case "null":
            return value is None
        case "boolean":
            return isinstance(value, bool)
        case "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        case "string":
            return isinstance(value, str)
        case "array":
            return isinstance(value, list | tuple)
        case "object":
            return isinstance(value, Mapping)
    return True  # a type this checker does not know: not checked


def _refused(value: Any, prop: Mapping[str, Any]) -> str | None:
    """Why ``value`` does not match ``prop``; None when it does (or cannot be told)."""
    if "anyOf" in prop:
        reasons = [_refused(value, branch) for branch in prop["anyOf"]]
        refusals = [r for r in reasons if r is not None]
        return " or ".join(refusals) if len(refusals) == len(reasons) else None
    kind = prop.get("type")
    kinds: list[str] = kind if isinstance(kind, list) else [kind] if kind else []
    if kinds and not any(_type_ok(value, k) for k in kinds):
        return f"must be {' or '.join(_A.get(k, k) for k in kinds)}, got {_what(value)}"
    if "const" in prop and value != prop["const"]:
        return f"must be {prop['const']!r}"
    if "enum" in prop and value not in prop["enum"]:
        return f"must be one of {', '.join(repr(v) for v in prop['enum'])}, got {value!r}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _number(value, prop)
    if isinstance(value, str):
        if "minLength" in prop and len(value) < prop["minLength"]:
            return f"must have at least {prop['minLength']} characters"
        if "maxLength" in prop and len(value) > prop["maxLength"]:
            return f"must have at most {prop['maxLength']} characters"
    if isinstance(value, list | tuple):
        if "minItems" in prop and len(value) < prop["minItems"]:
            return f"must have at least {prop['minItems']} items, got {len(value)}"
        if "maxItems" in prop and len(value) > prop["maxItems"]:
            return f"must have at most {prop['maxItems']} items, got {len(value)}"
        items = prop.get("items")
        if isinstance(items, Mapping):
            for i, item in enumerate(value):
                why = _refused(item, items)
                if why is not None:
                    return f"item {i} {why}"
    return None


def _number(value: float, prop: Mapping[str, Any]) -> str | None:
    for key, sign in _BOUNDS:
        bound = prop.get(key)
        if bound is not None and not _holds(value, sign, bound):
            return f"must be {sign} {bound:g}, got {value:g}"
    step = prop.get("multipleOf")
    if step and not math.isclose(value / step, round(value / step), abs_tol=1e-9):
        return f"must be a multiple of {step:g}, got {value:g}"
    return None


_BOUNDS = (
    ("minimum", ">="), ("maximum", "<="), ("exclusiveMinimum", ">"), ("exclusiveMaximum", "<"),
)  # fmt: skip


def _holds(value: float, sign: str, bound: float) -> bool:
    return {
        ">=": value >= bound, "<=": value <= bound, ">": value > bound, "<": value < bound,
    }[sign]  # fmt: skip


_A = {
    "null": "null", "boolean": "a boolean", "integer": "an integer", "number": "a number",
    "string": "a string", "array": "a list", "object": "an object",
}  # fmt: skip


def _what(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {shown(repr(value))}"
    return "a list" if isinstance(value, list | tuple) else "an object"
