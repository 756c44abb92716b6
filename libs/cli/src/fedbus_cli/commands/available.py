"""``fedbus models available``: the models this environment can build (the model plugins).

Every model comes from the entry-point group ``fedbus.models`` of an installed distribution
(docs/models.md); this lists each one with its options (JSON Schema: type, default,
constraints), its providing package and version, and every plugin that failed to load.
It needs the executor (``fedbus-cli[train]``): without it, it says so and exits 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from typing import Any

__all__ = ["add_available_parser", "catalog"]

_CONSTRAINTS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
                "minLength", "maxLength", "minItems", "maxItems", "enum")  # fmt: skip


def add_available_parser(commands: Any) -> None:
    """Add ``available`` to the ``models`` subcommands."""
    parser = commands.add_parser(
        "available", help="models this environment can build (plugins), with their options"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=_available)


def _option_rows(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        kind = prop.get("type") or " | ".join(
            str(branch.get("type", "?")) for branch in prop.get("anyOf", [])
        )
        if kind == "array" and isinstance(prop.get("items"), dict):
            kind = f"array of {prop['items'].get('type', '?')}"
        row: dict[str, Any] = {"name": name, "type": kind or "any"}
        if "default" in prop:
            row["default"] = prop["default"]
        elif name in required:
            row["required"] = True
        row.update({k: prop[k] for k in _CONSTRAINTS if k in prop})
        if prop.get("description"):
            row["description"] = prop["description"]
        rows.append(row)
    return rows


def catalog() -> dict[str, Any]:
    """``{"models": [...], "errors": [...]}``: each model's package, version and options."""
    from fedbus_executor import available_models, get_model_entry, plugin_errors

    models = []
    for name in available_models():
        entry = get_model_entry(name)
        schema = entry.options.model_json_schema()
        models.append(
            {
                "name": name,
                "package": entry.distribution,
                "version": entry.version,
                "entry_point": entry.entry_point,
                "description": entry.description,
                "options": _option_rows(schema),
                "options_schema": schema,
                "lora_targets": list(entry.lora_targets),
            }
        )
    errors = [
        {
            "name": e.entry_point,
            "entry_point": e.value,
            "package": e.distribution,
            "version": e.version,
            "error": e.error,
        }
        for e in plugin_errors()
    ]
    return {"models": models, "errors": errors}


def _describe(option: dict[str, Any]) -> str:
    text = f"{option['name']}: {option['type']}"
    if "default" in option:
        text += f" = {json.dumps(option['default'])}"
    elif option.get("required"):
        text += " (required)"
    limits = [f"{k} {json.dumps(option[k])}" for k in _CONSTRAINTS if k in option]
    if limits:
        text += f" ({', '.join(limits)})"
    return text


def _available(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("fedbus_executor") is None:
        print(
            "error: `fedbus models available` needs the training executor: "
            "pip install 'fedbus-cli[train]'",
            file=sys.stderr,
        )
        return 2
    found = catalog()
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    print(f"{'MODEL':<24}  {'PACKAGE':<28}  OPTIONS")
    for model in found["models"]:
        package = f"{model['package']} {model['version']}".strip()
        options = "; ".join(_describe(o) for o in model["options"]) or "-"
        print(f"{model['name']:<24}  {package:<28}  {options}")
    for error in found["errors"]:
        print(
            f"not loaded: {error['name']} ({error['package']} {error['version']}, "
            f"{error['entry_point']}): {error['error']}",
            file=sys.stderr,
        )
    return 0
