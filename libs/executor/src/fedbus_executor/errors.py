"""One error hierarchy for the executor: every failure a caller can act on is typed."""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "DatasetError",
    "DeviceError",
    "ExecutorError",
    "ModelError",
    "PrivacyConfigError",
]


class ExecutorError(Exception):
    """Base class of every error the executor raises on purpose."""


class DatasetError(ExecutorError):
    """A dataset file is missing, unreadable or does not match its declared schema.

    Parameters
    ----------
    path
        The file that failed.
    problem
        What is wrong, in words.
    column
        The column at fault, when the problem is in one column.
    """

    def __init__(self, path: str, problem: str, *, column: str | None = None) -> None:
        self.path = path
        self.column = column
        self.problem = problem
        where = f"{path}" if column is None else f"{path}, column {column!r}"
        super().__init__(f"{where}: {problem}")


class ModelError(ExecutorError):
    """A model name is unknown, or weights do not fit the model."""


class DeviceError(ExecutorError):
    """A device request cannot be understood (fallback covers devices that fail)."""


class PrivacyConfigError(ExecutorError):
    """DP settings are impossible, or the model cannot be trained with DP-SGD."""


class CheckpointError(ExecutorError):
    """A checkpoint is missing, tampered with, or encrypted with another key."""
