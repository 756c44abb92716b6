"""fedbus_trainer: trains the rounds that select it on local data, sends deltas by reference.

Run it with ``fedbus-trainer --client-id C --data NAME=PATH`` (see :mod:`fedbus_trainer.main`).
"""

from fedbus_trainer.datasets import LocalDataset, load_local_datasets, parse_data_args
from fedbus_trainer.handlers import (
    HANDLERS,
    ExecutorTrainer,
    TrainerDeps,
    bind_handlers,
    on_round_started,
)
from fedbus_trainer.heartbeat import Activity, heartbeat_event, heartbeat_loop
from fedbus_trainer.memory import release_free_memory
from fedbus_trainer.settings import TrainerSettings
from fedbus_trainer.state import SubmittedLog
from fedbus_trainer.tasks import client_seed, training_task

__all__ = [
    "HANDLERS",
    "Activity",
    "ExecutorTrainer",
    "LocalDataset",
    "SubmittedLog",
    "TrainerDeps",
    "TrainerSettings",
    "bind_handlers",
    "client_seed",
    "heartbeat_event",
    "heartbeat_loop",
    "load_local_datasets",
    "on_round_started",
    "parse_data_args",
    "release_free_memory",
    "training_task",
]
