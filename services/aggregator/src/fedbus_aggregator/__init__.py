"""fedbus aggregator: combines a round's client updates into the next global model.

Consumes ``round.started`` and ``update.submitted``, emits ``round.completed`` (and
``progress``). Round state lives in PostgreSQL, weights in MinIO.
"""

from fedbus_aggregator.handlers import HANDLERS, bind, close_due_rounds
from fedbus_aggregator.rounds import (
    Admission,
    Decision,
    RejectCode,
    RoundState,
    RoundStatus,
    UpdateRecord,
    UpdateStatus,
)
from fedbus_aggregator.runtime import Deps, UpdateCache
from fedbus_aggregator.settings import AggregatorSettings
from fedbus_aggregator.store import InMemoryRoundStore, RoundStore
from fedbus_aggregator.strategies import build_strategy

__all__ = [
    "HANDLERS",
    "Admission",
    "AggregatorSettings",
    "Decision",
    "Deps",
    "InMemoryRoundStore",
    "RejectCode",
    "RoundState",
    "RoundStatus",
    "RoundStore",
    "UpdateCache",
    "UpdateRecord",
    "UpdateStatus",
    "bind",
    "build_strategy",
    "close_due_rounds",
]
