"""fedbus aggregator: combines a round's client updates into the next global model.

Consumes ``round.started`` and ``update.submitted``, emits ``round.completed`` (and
``progress``). Round state lives in PostgreSQL, weights in MinIO. The rooms are those of
every service (``docs/architecture.md``): :mod:`~fedbus_aggregator.main` (wiring),
:mod:`~fedbus_aggregator.handlers` (the handlers and ``HANDLERS``),
:mod:`~fedbus_aggregator.deps` (``Deps``), :mod:`~fedbus_aggregator.store` (the
``RoundStore`` port), :mod:`~fedbus_aggregator.adapters` (PostgreSQL, the executor), and
the pure round logic in :mod:`~fedbus_aggregator.rounds`.
"""

from fedbus_aggregator.caches import GlobalCache, RoundLocks, UpdateCache
from fedbus_aggregator.deps import Deps
from fedbus_aggregator.handlers import HANDLERS, close_due_rounds
from fedbus_aggregator.models import ModelSource
from fedbus_aggregator.rounds import (
    Admission,
    Decision,
    RejectCode,
    RoundState,
    RoundStatus,
    UpdateRecord,
    UpdateStatus,
)
from fedbus_aggregator.settings import AggregatorSettings
from fedbus_aggregator.store import RoundStore
from fedbus_aggregator.strategies import build_strategy

__all__ = [
    "HANDLERS",
    "Admission",
    "AggregatorSettings",
    "Decision",
    "Deps",
    "GlobalCache",
    "ModelSource",
    "RejectCode",
    "RoundLocks",
    "RoundState",
    "RoundStatus",
    "RoundStore",
    "UpdateCache",
    "UpdateRecord",
    "UpdateStatus",
    "build_strategy",
    "close_due_rounds",
]
