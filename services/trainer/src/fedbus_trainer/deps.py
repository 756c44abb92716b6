"""The trainer's dependency object: what its handler takes as ``deps``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

from fedbus.bus import Publisher
from fedbus.events import ModelRef
from fedbus_executor import ProgressCallback, TrainingResult, TrainingTask
from fedbus_trainer.adapters.executor import ExecutorTrainer
from fedbus_trainer.datasets import LocalDataset
from fedbus_trainer.heartbeat import Activity
from fedbus_trainer.site import SiteGate
from fedbus_trainer.state import SubmittedLog

__all__ = ["Deps", "GrantedArtifacts", "TrainFn"]

TrainFn = Callable[[TrainingTask, ProgressCallback], TrainingResult]
"""Trains one task, reporting progress (blocking: it runs in the compute thread)."""


class GrantedArtifacts(Protocol):
    """Artifacts through the URLs a ``round.assigned`` grants (no storage credentials).

    :class:`~fedbus_trainer.adapters.presigned.PresignedArtifacts` in production.
    """

    async def get_bytes(self, url: str, ref: ModelRef) -> bytes:
        """The plaintext of ``ref`` through ``url``, decrypted and checked against ``ref``."""

    async def put_bytes(self, url: str, data: bytes, *, key: str) -> ModelRef:
        """Seal ``data`` for ``key``, write it through ``url``; the plaintext's reference."""


@dataclass
class Deps:
    """What the handler needs: who it is, its data, its granted artifacts, a live publisher.

    Attributes
    ----------
    client_id
        This trainer's client id (a round must select it).
    datasets
        The datasets held here, by announced name.
    artifacts
        Global models in, updates out, through each round's presigned URLs.
    publisher
        Sends progress while a round trains (the producer in production).
    submitted
        The ``update.submitted`` already sent per (job, round, ``round.started``), answered
        again when that attempt is assigned again.
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
    site
        The site policy: a round it refuses is declined, not trained (none: accept all).
    """

    client_id: str
    datasets: Mapping[str, LocalDataset]
    artifacts: GrantedArtifacts
    publisher: Publisher
    submitted: SubmittedLog
    activity: Activity = field(default_factory=Activity)
    device: str = "auto"
    train: TrainFn = field(default_factory=ExecutorTrainer)
    progress_interval_s: float = 0.5
    compute: Executor | None = None
    site: SiteGate = field(default_factory=SiteGate)
