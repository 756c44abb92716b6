"""``fedbus data prepare``: build a dataset into Parquet client partitions."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]

DATASETS = ("mnist", "fashion-mnist", "digits", "text")


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
    prep.set_defaults(handler=prepare)


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
    )
    try:
        prepared = prepare_dataset(args.dataset, args.out, options)
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    files: dict[str, dict[str, Any]] = prepared.manifest["files"]  # type: ignore[assignment]
    print(f"dataset {args.dataset} written to {prepared.root}")
    print(f"classes: {', '.join(prepared.spec.classes)}")
    print(
        f"test: {files['test.parquet']['rows']} rows, train: {files['train.parquet']['rows']} rows"
    )
    for i, hist in enumerate(prepared.client_histograms):
        print(f"client-{i:03d}: n={sum(hist):6d} labels={hist}")
    print(f"manifest: {prepared.root / 'manifest.json'}")
    return 0
