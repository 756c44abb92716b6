"""``fedbus data prepare`` and ``fedbus data import``: datasets into Parquet client files.

Both write the same folder (``manifest.json``, ``train.parquet``, ``test.parquet``,
``clients/<client id>.parquet``: :mod:`fedbus.datalayout`), which trainers read.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]

DATASETS = ("mnist", "fashion-mnist", "digits", "text")
CLIENT_NAMES_HELP = (
    "names of the client files clients/<name>.parquet, {i} being 0, 1, ...; each is the "
    "client id of the trainer that reads it (default: client-{i:03d}; for the fedbus "
    "chart's pods: <release>-trainer-<pool>-{i})"
)


def register(subparsers: Any) -> None:
    """Add the ``data`` group to the top-level subparsers."""
    group = subparsers.add_parser("data", help="prepare datasets")
    commands = group.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    prep = commands.add_parser("prepare", help="build a dataset into Parquet partitions")
    prep.add_argument("--dataset", required=True, choices=DATASETS)
    prep.add_argument("--out", default="data", help="output root (default: data)")
    prep.add_argument("--clients", type=int, default=4, help="number of client partitions")
    prep.add_argument("--partition", choices=("iid", "dirichlet"), default="iid")
    prep.add_argument("--alpha", type=float, default=0.5, help="Dirichlet alpha (non-IID)")
    prep.add_argument("--seed", type=int, default=0)
    prep.add_argument("--test-fraction", type=float, default=0.2)
    prep.add_argument("--limit", type=int, default=None, help="keep N training examples")
    prep.add_argument("--client-names", default="client-{i:03d}", help=CLIENT_NAMES_HELP)
    prep.set_defaults(handler=prepare)
    _register_import(commands)


def _register_import(commands: Any) -> None:
    imp = commands.add_parser(
        "import",
        help="your own CSV or Parquet file into Parquet client files",
        description="Validate a CSV/TSV/Parquet file (one example per row) and write the "
        "dataset folder trainers read. Errors name the row (1 = first data row) and column; "
        "nothing is written then (exit code 2).",
    )
    imp.add_argument("path", help="the .csv, .tsv or .parquet file")
    imp.add_argument("--label", required=True, help="label column: integers 0 .. K-1")
    imp.add_argument(
        "--features", default="", help="feature columns a,b,c (default: every other numeric one)"
    )
    imp.add_argument(
        "--image-shape", default=None, help="the features are an image's pixels: e.g. 1,28,28"
    )
    imp.add_argument(
        "--classes", default="", help="class names c0,c1,... for labels 0,1,... (default: 0..max)"
    )
    imp.add_argument("--test-fraction", type=float, default=0.2, help="held-out share (0.2)")
    split = imp.add_mutually_exclusive_group()
    split.add_argument(
        "--partition-by", default=None, help="one client per value of this column (site)"
    )
    split.add_argument("--clients", type=int, default=1, help="number of numbered clients (1)")
    imp.add_argument(
        "--dirichlet", type=float, default=None, metavar="ALPHA",
        help="non-IID numbered clients, label shares ~ Dirichlet(ALPHA) (default: IID)",
    )  # fmt: skip
    imp.add_argument("--client-names", default="client-{i:03d}", help=CLIENT_NAMES_HELP)
    imp.add_argument("--seed", type=int, default=0)
    imp.add_argument("--name", default=None, help="dataset name (default: the file's stem)")
    imp.add_argument("--out", default="data", help="output root (default: data)")
    imp.add_argument("--force", action="store_true", help="replace an existing dataset folder")
    imp.set_defaults(handler=import_file)


def prepare(args: argparse.Namespace) -> int:
    """Run ``fedbus data prepare``; prints the client label histograms."""
    from fedbus_executor import DatasetError, PrepareOptions, prepare_dataset

    options = PrepareOptions(
        num_clients=args.clients,
        partition=args.partition,
        alpha=args.alpha,
        seed=args.seed,
        test_fraction=args.test_fraction,
        limit=args.limit,
        client_names=args.client_names,
    )
    try:
        prepared = prepare_dataset(args.dataset, args.out, options)
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"dataset {args.dataset} written to {prepared.root}")
    _summary(prepared)
    return 0


def import_file(args: argparse.Namespace) -> int:
    """Run ``fedbus data import``; exit code 2 with the row and column of a bad value."""
    from fedbus_executor.errors import DatasetError
    from fedbus_executor.importer import ImportOptions, import_dataset

    try:
        options = ImportOptions(
            label=args.label,
            features=_names(args.features),
            image_shape=_shape(args.image_shape),
            classes=_names(args.classes),
            test_fraction=args.test_fraction,
            partition_by=args.partition_by,
            num_clients=args.clients,
            dirichlet_alpha=args.dirichlet,
            client_names=args.client_names,
            seed=args.seed,
            name=args.name,
        )
        prepared = import_dataset(args.path, args.out, options, replace=args.force)
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    source: dict[str, Any] = prepared.manifest["source"]  # type: ignore[assignment]
    print(f"dataset {prepared.spec.name} written to {prepared.root}")
    shape = "x".join(map(str, prepared.spec.feature_shape))
    print(f"features ({shape}): {_shortlist(source['features'])}")
    if source["ignored_columns"]:
        print(f"ignored (not numeric): {', '.join(source['ignored_columns'])}")
    _summary(prepared)
    return 0


def _summary(prepared: Any) -> None:
    from fedbus.datalayout import client_file

    files: dict[str, dict[str, Any]] = prepared.manifest["files"]
    clients: list[str] = prepared.manifest["clients"]
    print(f"classes: {', '.join(prepared.spec.classes)}")
    print(
        f"test: {files['test.parquet']['rows']} rows, train: {files['train.parquet']['rows']} rows"
    )
    for cid, hist in zip(clients, prepared.client_histograms, strict=True):
        print(f"{client_file(prepared.root, cid)}: n={sum(hist)} labels={hist}")
    print(f"manifest: {prepared.root / 'manifest.json'}")
    first = clients[0]
    print(
        f"a trainer reads its own file: fedbus-trainer --client-id {first} "
        f"--data {prepared.spec.name}={client_file(prepared.root, first)}"
    )


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        raise ValueError(f"--image-shape {text!r}: expected sizes like 1,28,28") from None
    return shape


def _shortlist(names: list[str], n: int = 8) -> str:
    shown = ", ".join(names[:n])
    return shown + (f", ... ({len(names)} columns)" if len(names) > n else "")
