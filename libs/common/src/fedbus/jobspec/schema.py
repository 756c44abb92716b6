"""The JSON Schema of a job spec as :func:`~fedbus.jobspec.check_spec` takes it (for OpenAPI)."""

from __future__ import annotations

import copy
import math
from typing import Any

from fedbus.events.jobs import JobSpec
from fedbus.jobspec.bounds import Interval
from fedbus.jobspec.rules import FIELD_BOUNDS, MAX_NAME_LENGTH, MAX_OPTIONS

__all__ = ["spec_json_schema"]

_DESCRIPTION = (
    "What to train, on what, and under which privacy rules. Unknown fields are refused at "
    "every level, and nothing is coerced. Rules across fields (min_clients <= "
    "clients_per_round, the DP parameters each privacy mode needs or refuses, each "
    "strategy's options and their ranges) are checked too: docs/jobspec.md lists them, and "
    "each broken one is a 422 error at its field."
)


def spec_json_schema() -> dict[str, Any]:
    """The spec's JSON Schema, self-contained (no ``$ref``), with every record closed.

    Returns
    -------
    dict[str, Any]
        ``JobSpec``'s schema with ``additionalProperties: false`` on every record, the
        length limits of ``model`` and ``dataset``, the size limit of ``strategy.options``
        and the range of each number in :data:`~fedbus.jobspec.rules.FIELD_BOUNDS`.
    """
    schema = JobSpec.model_json_schema(mode="validation")
    defs = schema.pop("$defs", {})
    spec: dict[str, Any] = _inline(schema, defs)
    props = spec["properties"]
    for name in ("model", "dataset"):
        props[name]["maxLength"] = MAX_NAME_LENGTH
    props["strategy"]["properties"]["options"]["maxProperties"] = MAX_OPTIONS
    props["model_options"]["maxProperties"] = MAX_OPTIONS
    for path, bound in FIELD_BOUNDS.items():
        _bound(_number_schema(spec, path), bound)
    spec["description"] = _DESCRIPTION
    return spec


def _bound(node: dict[str, Any], bound: Interval) -> None:
    """Replace the node's bounds (an Avro int's range) with ``bound`` where it sets one."""
    keywords = bound.json_schema()
    for side in ("inimum", "aximum"):
        if any(k.endswith(side) for k in keywords):
            node.pop(f"m{side}", None)
            node.pop(f"exclusiveM{side}", None)
    if node.get("type") == "integer" and "exclusiveMinimum" in keywords:
        keywords["minimum"] = math.floor(keywords.pop("exclusiveMinimum")) + 1
    node.update(keywords)


def _number_schema(spec: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    node = spec
    for name in path:
        node = node["properties"][name]
    # An optional number is anyOf [number, null]: the bound goes on the number.
    numbers = [n for n in node.get("anyOf", []) if n.get("type") != "null"]
    found: dict[str, Any] = numbers[0] if numbers else node
    return found


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:  # "#/$defs/Name", maybe beside a default: the default stays
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return _inline({**target, **rest}, defs)
    out = {key: _inline(value, defs) for key, value in node.items()}
    if out.get("type") == "object" and "properties" in out:
        out["additionalProperties"] = False
    return out
