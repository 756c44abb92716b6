"""fedbus_trainer: trains the rounds assigned to it on local data, sends deltas by reference.

Run it with ``fedbus-trainer --client-id C --data NAME=PATH`` (see :mod:`fedbus_trainer.main`).
The rooms are those of every service (``docs/architecture.md``):
:mod:`~fedbus_trainer.main` (wiring), :mod:`~fedbus_trainer.handlers` (the handler and
``HANDLERS``), :mod:`~fedbus_trainer.deps` (``Deps``), :mod:`~fedbus_trainer.adapters`
(the training executor, the presigned-URL artifacts), and the pure round logic in
:mod:`~fedbus_trainer.tasks`.
"""

from fedbus_trainer.adapters.executor import ExecutorTrainer
from fedbus_trainer.adapters.presigned import GrantRefusedError, PresignedArtifacts
from fedbus_trainer.datasets import LocalDataset, load_local_datasets, parse_data_args
from fedbus_trainer.deps import Deps, GrantedArtifacts, TrainFn
from fedbus_trainer.handlers import HANDLERS, on_round_assigned
from fedbus_trainer.heartbeat import Activity, heartbeat_event, heartbeat_loop
from fedbus_trainer.memory import release_free_memory
from fedbus_trainer.settings import TrainerSettings
from fedbus_trainer.state import SubmittedLog
from fedbus_trainer.tasks import client_seed, training_task

__all__ = [
    "HANDLERS",
    "Activity",
    "Deps",
    "ExecutorTrainer",
    "GrantRefusedError",
    "GrantedArtifacts",
    "LocalDataset",
    "PresignedArtifacts",
    "SubmittedLog",
    "TrainFn",
    "TrainerSettings",
    "client_seed",
    "heartbeat_event",
    "heartbeat_loop",
    "load_local_datasets",
    "on_round_assigned",
    "parse_data_args",
    "release_free_memory",
    "training_task",
]
