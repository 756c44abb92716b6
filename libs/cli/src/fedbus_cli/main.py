"""The ``fedbus`` dispatcher: one module per command group, each with ``register``.

To add a group (``fedbus jobs ...``), write ``fedbus_cli/commands/jobs.py`` with
``register(subparsers)`` that adds its parser and sets ``handler`` (a function taking the
parsed namespace and returning an exit code), then list the module in COMMAND_GROUPS, or in
EXECUTOR_GROUPS when it needs the training executor. Handlers import heavy libraries (torch)
inside themselves, so ``fedbus --help`` is fast.

``fedbus-cli`` alone is a gateway client without torch: the executor's groups (``data``,
``train``) appear only when ``fedbus-executor`` is installed, as ``fedbus-cli[train]`` does.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence

__all__ = [
    "COMMAND_GROUPS",
    "EXECUTOR_GROUPS",
    "build_parser",
    "executor_available",
    "main",
]

COMMAND_GROUPS: tuple[str, ...] = (
    "fedbus_cli.commands.audit",
    "fedbus_cli.commands.jobs",
    "fedbus_cli.commands.models",
    "fedbus_cli.commands.privacy",
)
"""Groups every install has: they talk to the gateway or read the event log."""

EXECUTOR_GROUPS: dict[str, str] = {
    "data": "fedbus_cli.commands.data",
    "train": "fedbus_cli.commands.train",
}
"""Command name -> module of the groups that run the training executor (torch)."""

TRAIN_EXTRA = "pip install 'fedbus-cli[train]'"


def executor_available() -> bool:
    """True when ``fedbus_executor`` can be imported (found, not imported: torch stays out)."""
    return importlib.util.find_spec("fedbus_executor") is not None


def build_parser(*, with_executor: bool | None = None) -> argparse.ArgumentParser:
    """The top-level parser with every registered command group.

    Parameters
    ----------
    with_executor
        Register :data:`EXECUTOR_GROUPS` too; by default when :func:`executor_available`.
    """
    if with_executor is None:
        with_executor = executor_available()
    parser = argparse.ArgumentParser(prog="fedbus", description="fedbus command line")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = (tuple(EXECUTOR_GROUPS.values()) if with_executor else ()) + COMMAND_GROUPS
    for module_name in modules:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not executor_available():
        command = next((arg for arg in argv if not arg.startswith("-")), None)
        if command in EXECUTOR_GROUPS:
            print(
                f"error: `fedbus {command}` runs the training executor, which is not "
                f"installed (it brings torch); install it with: {TRAIN_EXTRA}",
                file=sys.stderr,
            )
            return 2
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
