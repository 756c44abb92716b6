"""The one dependency object orchestration's handlers and deadline watcher take."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fedbus.events import utc_now
from fedbus_orchestration.settings import OrchestrationSettings, load_model_catalog
from fedbus_orchestration.state import Policy
from fedbus_orchestration.store import JobStore

__all__ = ["Deps", "deps_from"]


@dataclass(frozen=True)
class Deps:
    """What the handlers need: the store, the limits, and a clock."""

    store: JobStore
    policy: Policy = field(default_factory=Policy)
    known_datasets: frozenset[str] = frozenset()
    staleness_factor: float = 3.0
    clock: Callable[[], datetime] = utc_now
    lifetime_cap: float | None = None
    """``FEDBUS_CLIENT_LIFETIME_EPSILON``: each client's cap per dataset across jobs."""
    aggregator_models: Mapping[str, Mapping[str, Any]] | None = None
    """What the aggregator can build (``FEDBUS_MODEL_CATALOG``: options JSON Schema per
    model; None when not set): a model it lacks, or options its schema refuses, are rejected
    at admission. Trainers' models come from their heartbeats."""


def deps_from(settings: OrchestrationSettings, store: JobStore) -> Deps:
    """The handlers' dependencies as the settings describe them."""
    policy = Policy(
        max_round_retries=settings.max_round_retries,
        max_rollbacks=settings.max_rollbacks,
        divergence_factor=settings.divergence_factor,
        round_grace_seconds=settings.round_grace_seconds,
    )
    catalog = settings.model_catalog
    return Deps(
        store=store,
        policy=policy,
        aggregator_models=load_model_catalog(catalog) if catalog and catalog.strip() else None,
        known_datasets=frozenset(settings.known_datasets),
        staleness_factor=settings.heartbeat_staleness_factor,
        lifetime_cap=settings.client_lifetime_epsilon,
    )
