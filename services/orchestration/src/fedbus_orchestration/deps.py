"""The one dependency object orchestration's handlers and deadline watcher take."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from fedbus.events import utc_now
from fedbus_orchestration.settings import OrchestrationSettings
from fedbus_orchestration.state import Policy
from fedbus_orchestration.store import JobStore

__all__ = ["Deps", "deps_from"]


@dataclass(frozen=True)
class Deps:
    """What the handlers need: the store, the limits, and a clock."""

    store: JobStore
    policy: Policy = field(default_factory=Policy)
    known_models: frozenset[str] = frozenset()
    known_datasets: frozenset[str] = frozenset()
    staleness_factor: float = 3.0
    clock: Callable[[], datetime] = utc_now
    lifetime_cap: float | None = None
    """``FEDBUS_CLIENT_LIFETIME_EPSILON``: each client's cap per dataset across jobs."""


def deps_from(settings: OrchestrationSettings, store: JobStore) -> Deps:
    """The handlers' dependencies as the settings describe them."""
    policy = Policy(
        max_round_retries=settings.max_round_retries,
        max_rollbacks=settings.max_rollbacks,
        divergence_factor=settings.divergence_factor,
        round_grace_seconds=settings.round_grace_seconds,
    )
    return Deps(
        store=store,
        policy=policy,
        known_models=frozenset(settings.known_models),
        known_datasets=frozenset(settings.known_datasets),
        staleness_factor=settings.heartbeat_staleness_factor,
        lifetime_cap=settings.client_lifetime_epsilon,
    )
