"""``fedbus models predict NAME VERSION --input FILE``: classify a file's rows through the gateway.

The file is CSV (one example per line, its numbers flat; a first line that is not numbers is
a header), ``.npy`` (an array of examples, no pickles) or JSON (a list of rows, or
``{"inputs": [...]}``). Rows go to ``POST /v1/models/{name}/versions/{v}:predict`` in chunks
of ``--chunk`` rows; the gateway checks their shape and values and says what it expected.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from fedbus_cli.commands._gateway import (
    GatewayClient,
    GatewayError,
    add_connection_flags,
    run_with_client,
)

__all__ = ["add_predict_parser", "read_inputs"]


def add_predict_parser(commands: Any) -> None:
    """Add ``predict`` to the ``models`` subcommands."""
    parser = commands.add_parser(
        "predict", help="classify the rows of a CSV, .npy or JSON file with a version"
    )
    parser.add_argument("name")
    parser.add_argument("version", type=int)
    parser.add_argument(
        "-i", "--input", type=Path, required=True, help="CSV, .npy or JSON file of examples"
    )
    parser.add_argument(
        "--chunk", type=int, default=64, help="rows per request (default 64; the gateway's "
        "limit is FEDBUS_GATEWAY_PREDICT_MAX_ROWS)"
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the answers as one JSON")
    # The first request of a version waits while the gateway loads it (weights, model).
    add_connection_flags(parser, timeout_s=120.0)
    parser.set_defaults(handler=_predict)


def read_inputs(path: Path) -> list[Any]:
    """The rows of ``path`` as nested lists (by its suffix: ``.csv``, ``.npy``, ``.json``).

    Raises
    ------
    GatewayError
        The file cannot be read, or a CSV cell is not a number (its line and column named).
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
            rows: list[Any] = array.tolist() if array.ndim > 0 else [array.tolist()]
            return rows
        if suffix == ".json":
            loaded = json.loads(path.read_text(encoding="utf-8"))
            loaded = loaded.get("inputs") if isinstance(loaded, dict) else loaded
            if not isinstance(loaded, list):
                raise GatewayError(f"{path}: expected a JSON list of rows or {{'inputs': [...]}}")
            return loaded
        if suffix == ".csv":
            return _csv_rows(path)
    except (OSError, ValueError) as exc:
        raise GatewayError(f"cannot read {path}: {exc}") from None
    raise GatewayError(f"{path}: unknown input format {suffix!r}; use .csv, .npy or .json")


def _csv_rows(path: Path) -> list[list[float]]:
    rows: list[list[float]] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for line_no, cells in enumerate(csv.reader(fh), start=1):
            if not cells:
                continue
            try:
                rows.append([float(c) for c in cells])
            except ValueError:
                if line_no == 1:  # a header
                    continue
                column = next(i for i, c in enumerate(cells, start=1) if not _is_number(c))
                raise GatewayError(
                    f"{path}: line {line_no}, column {column}: "
                    f"{cells[column - 1]!r} is not a number"
                ) from None
    return rows


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _predict(args: argparse.Namespace) -> int:
    def act(client: GatewayClient, args: argparse.Namespace) -> int:
        rows = read_inputs(args.input)
        if not rows:
            raise GatewayError(f"{args.input} holds no rows")
        chunk = max(1, args.chunk)
        path = f"/v1/models/{quote(args.name, safe='')}/versions/{args.version}:predict"
        answers = [
            client.request("POST", path, json={"inputs": rows[start : start + chunk]})
            for start in range(0, len(rows), chunk)
        ]
        merged = _merge(answers)
        if args.json:
            print(json.dumps(merged, indent=2))
            return 0
        print(f"{'ROW':>5}  {'LABEL':<16}  PROBABILITY")
        labelled = zip(merged["labels"], merged["probabilities"], strict=True)
        for i, (label, probs) in enumerate(labelled):
            print(f"{i:>5}  {label:<16}  {max(probs):.4f}")
        privacy = merged["privacy"]
        if privacy.get("mode", "none") == "none":
            print("privacy: none (trained without differential privacy)")
        else:
            print(f"privacy: {privacy['mode']}, epsilon {privacy['epsilon']}, "
                  f"delta {privacy['delta']}")  # fmt: skip
        return 0

    return run_with_client(args, act)


def _merge(answers: list[dict[str, Any]]) -> dict[str, Any]:
    first = answers[0]
    return {
        "model": first.get("model"),
        "version": first.get("version"),
        "classes": first.get("classes"),
        "labels": [label for a in answers for label in a.get("labels", [])],
        "probabilities": [p for a in answers for p in a.get("probabilities", [])],
        "privacy": first.get("privacy", {}),
    }
