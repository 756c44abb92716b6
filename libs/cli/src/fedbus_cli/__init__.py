"""fedbus_cli: the ``fedbus`` command line."""

from fedbus_cli.main import COMMAND_GROUPS, build_parser, main

__all__ = ["COMMAND_GROUPS", "build_parser", "main"]
