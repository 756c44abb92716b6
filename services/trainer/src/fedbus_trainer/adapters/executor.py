"""The trainer's training function on :mod:`fedbus_executor` (torch)."""

from __future__ import annotations

from fedbus_executor import (
    DatasetCache,
    ProgressCallback,
    TrainingExecutor,
    TrainingResult,
    TrainingTask,
)

__all__ = ["ExecutorTrainer"]


class ExecutorTrainer:
    """The trainer's :data:`~fedbus_trainer.deps.TrainFn`: one executor for the process's life.

    Its :class:`~fedbus_executor.DatasetCache` keeps the client's validated partition
    between rounds; the file is read again only when it changes (path, inode, size or
    modification time).
    """

    def __init__(self, datasets: DatasetCache | None = None) -> None:
        self.datasets = datasets if datasets is not None else DatasetCache()
        self._executor = TrainingExecutor(datasets=self.datasets)

    def __call__(self, task: TrainingTask, progress: ProgressCallback) -> TrainingResult:
        """Train ``task`` (blocking; runs in a worker thread)."""
        return self._executor.train(task, progress=progress)
