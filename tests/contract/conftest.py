"""Schema compatibility for the contract tests, by Apache Avro's own checker (``avro``).

``avro`` is a development dependency only: the runtime packages never import it.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import parse

Problems = Callable[..., list[str]]


def qualify_aliases(schema: Any, namespace: str = "") -> Any:
    """``schema`` with every relative alias of a named type written in full.

    The Avro specification reads a type's alias without a dot as relative to the type's
    namespace; ``avro.compatibility`` (1.12.2) compares aliases with the writer's full
    name as they are written, so ``"aliases": ["Thing"]`` would not match
    ``io.fedbus.events.Thing``. Field aliases have no namespace and are left as they are.
    """
    if isinstance(schema, list):
        return [qualify_aliases(branch, namespace) for branch in schema]
    if not isinstance(schema, dict):
        return schema
    out = copy.copy(schema)
    if out.get("type") in {"record", "error", "enum", "fixed"}:
        name = str(out["name"])
        namespace = name.rpartition(".")[0] if "." in name else out.get("namespace", namespace)
        if "aliases" in out:
            out["aliases"] = [
                a if "." in a or not namespace else f"{namespace}.{a}" for a in out["aliases"]
            ]
    if "fields" in out:
        out["fields"] = [
            {**f, "type": qualify_aliases(f["type"], namespace)} for f in out["fields"]
        ]
    for key in ("items", "values", "type"):
        if isinstance(out.get(key), dict | list):
            out[key] = qualify_aliases(out[key], namespace)
    return out


def reader_problems(*, reader: Any, writer: Any) -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader`` (empty: it can).

    Each problem is ``<location>: <message>``, the location a JSON pointer into the reader.
    """
    with warnings.catch_warnings():  # fedbus.* schema attributes are unknown to avro: fine
        warnings.simplefilter("ignore")
        parsed_reader = parse(json.dumps(qualify_aliases(reader)))
        parsed_writer = parse(json.dumps(qualify_aliases(writer)))
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(parsed_reader, parsed_writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    return sorted(f"{'|'.join(sorted(result.locations))}: {m}" for m in result.messages)


def compatibility_problems(*, released: Any, current: Any, mode: str = "full") -> list[str]:
    """Why ``current`` breaks consumers of ``released`` or the other way round.

    ``backward``: consumers on ``current`` read events written with ``released``;
    ``forward``: consumers still on ``released`` read ``current`` events; ``full``: both,
    what fedbus requires since producers and consumers upgrade independently.
    """
    problems: list[str] = []
    if mode in ("backward", "full"):
        problems += [f"backward: {p}" for p in reader_problems(reader=current, writer=released)]
    if mode in ("forward", "full"):
        problems += [f"forward: {p}" for p in reader_problems(reader=released, writer=current)]
    return problems


@pytest.fixture
def compatibility() -> Problems:
    """:func:`compatibility_problems`, for tests in this folder."""
    return compatibility_problems


@pytest.fixture
def readable() -> Problems:
    """:func:`reader_problems`, for tests in this folder."""
    return reader_problems
