"""fedbus_cli: the ``fedbus`` command line."""

from fedbus_cli.main import (
    COMMAND_GROUPS,
    EXECUTOR_GROUPS,
    build_parser,
    executor_available,
    main,
)

__all__ = ["COMMAND_GROUPS", "EXECUTOR_GROUPS", "build_parser", "executor_available", "main"]
