"""The aggregator's dependency object: what every handler takes as ``deps``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from fedbus.events import utc_now
from fedbus.storage import ArtifactStore
from fedbus_aggregator.caches import GlobalCache, RoundLocks, UpdateCache
from fedbus_aggregator.grants import AssignedTopics, Presigner
from fedbus_aggregator.models import ModelSource
from fedbus_aggregator.store import RoundStore

__all__ = ["Deps"]


@dataclass
class Deps:
    """The aggregator's dependencies; tests pass fakes (in-memory stores, a fake model source).

    Attributes
    ----------
    store
        Round bookkeeping (PostgreSQL in production).
    artifacts
        Updates, global models and server optimizer state (MinIO in production).
    models
        Builds round 1's weights and evaluates new global models.
    source
        The ``source`` of emitted events.
    max_update_norm
        Optional bound on an update's L2 norm; larger ones are rejected.
    clock
        Current UTC time (tests move it past deadlines).
    locks
        One lock per round, so the consumer and the deadline task take turns on it.
    globals
        Recent rounds' global models (:class:`~fedbus_aggregator.caches.GlobalCache`).
    updates
        Accepted updates kept from judging to combining
        (:class:`~fedbus_aggregator.caches.UpdateCache`).
    presigner
        Signs each trainer's URLs (MinIO in production); None: no ``round.assigned`` is sent
        (unit tests of other rules).
    assigned_topics
        Creates ``round.assigned.<client_id>`` before the first assignment to that client.
    grant_grace_s
        Seconds past the round's deadline that its URLs keep working.
    """

    store: RoundStore
    artifacts: ArtifactStore
    models: ModelSource
    source: str = "aggregator"
    max_update_norm: float | None = None
    clock: Callable[[], datetime] = utc_now
    locks: RoundLocks = field(default_factory=RoundLocks)
    globals: GlobalCache = field(default_factory=GlobalCache)
    updates: UpdateCache = field(default_factory=UpdateCache)
    presigner: Presigner | None = None
    assigned_topics: AssignedTopics | None = None
    grant_grace_s: float = 300.0
