"""The trainer's dependency object: what its handler takes as ``deps``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field

from fedbus.bus import Publisher
from fedbus.storage import ArtifactStore
from fedbus_executor import ProgressCallback, TrainingResult, TrainingTask
from fedbus_trainer.adapters.executor import ExecutorTrainer
from fedbus_trainer.datasets import LocalDataset
from fedbus_trainer.heartbeat import Activity
from fedbus_trainer.state import SubmittedLog

__all__ = ["Deps", "TrainFn"]

TrainFn = Callable[[TrainingTask, ProgressCallback], TrainingResult]
"""Trains one task, reporting progress (blocking: it runs in the compute thread)."""


@dataclass
class Deps:
    """What the handler needs: who it is, its data, the store, a live publisher.

    Attributes
    ----------
    client_id
        This trainer's client id (a round must select it).
    datasets
        The datasets held here, by announced name.
    store
        Global models in, updates out (MinIO in production).
    publisher
        Sends progress while a round trains (the producer in production).
    submitted
        The ``update.submitted`` already sent, answered again on a redelivery.
    activity
        What is being trained now (for heartbeats).
    device
        Where training runs (``cpu``, ``cuda:0``, ...).
    train
        The training function (:class:`~fedbus_trainer.adapters.executor.ExecutorTrainer`).
    progress_interval_s
        At most one training progress event per this many seconds.
    compute
        Where training runs (the trainer's lowered-priority thread); None: asyncio's default.
    """

    client_id: str
    datasets: Mapping[str, LocalDataset]
    store: ArtifactStore
    publisher: Publisher
    submitted: SubmittedLog
    activity: Activity = field(default_factory=Activity)
    device: str = "auto"
    train: TrainFn = field(default_factory=ExecutorTrainer)
    progress_interval_s: float = 0.5
    compute: Executor | None = None
