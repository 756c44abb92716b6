"""The ``fedbus`` dispatcher: one module per command group, each with ``register``.

To add a group (``fedbus jobs ...``), write ``fedbus_cli/commands/jobs.py`` with
``register(subparsers)`` that adds its parser and sets ``handler`` (a function taking the
parsed namespace and returning an exit code), then list the module in COMMAND_GROUPS.
Handlers import heavy libraries (torch) inside themselves, so ``fedbus --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

__all__ = ["COMMAND_GROUPS", "build_parser", "main"]

COMMAND_GROUPS: tuple[str, ...] = (
    "fedbus_cli.commands.data",
    "fedbus_cli.commands.train",
    "fedbus_cli.commands.jobs",
    "fedbus_cli.commands.models",
    "fedbus_cli.commands.privacy",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered command group."""
    parser = argparse.ArgumentParser(prog="fedbus", description="fedbus command line")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_GROUPS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
