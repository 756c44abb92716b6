"""Client selection: which trainers are alive and hold the data, and who trains this round.

Pure functions; the clock and the trainer records come in as arguments.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fedbus.events import JobMode, JobSpec, TrainerStatus

__all__ = ["TrainerInfo", "eligible_trainers", "round_size", "select_clients"]


@dataclass(frozen=True)
class TrainerInfo:
    """What orchestration knows of a trainer from its latest heartbeat."""

    client_id: str
    datasets: dict[str, int]
    device: str
    status: TrainerStatus
    last_seen: datetime
    interval_seconds: int
    active_jobs: tuple[str, ...] = field(default=())
    capabilities: dict[str, Any] = field(default_factory=dict)
    """What it can build (:func:`fedbus_orchestration.admission.capabilities_of`): its
    models with their options schemas, and per dataset its facts and buildable models."""

    def is_fresh(self, now: datetime, *, staleness_factor: float = 3.0) -> bool:
        """True while its last heartbeat is younger than ``staleness_factor`` x its interval."""
        return now - self.last_seen < timedelta(seconds=staleness_factor * self.interval_seconds)


def eligible_trainers(
    trainers: Iterable[TrainerInfo],
    *,
    dataset: str,
    now: datetime,
    staleness_factor: float = 3.0,
) -> list[str]:
    """Sorted ids of fresh trainers that hold ``dataset`` and are not draining."""
    return sorted(
        t.client_id
        for t in trainers
        if dataset in t.datasets
        and t.status is not TrainerStatus.DRAINING
        and t.is_fresh(now, staleness_factor=staleness_factor)
    )


def round_size(spec: JobSpec, eligible: int) -> int:
    """How many of ``eligible`` trainers a round selects.

    Centralized: exactly one. Otherwise ``clients_per_round``, else
    ``ceil(client_fraction x eligible)``, else all; raised to ``min_clients``; never more than
    are eligible (a round with fewer than ``min_clients`` still starts and expires at its
    deadline, which the retry policy handles).
    """
    if spec.mode is JobMode.CENTRALIZED:
        wanted = 1
    elif spec.clients_per_round is not None:
        wanted = spec.clients_per_round
    elif spec.client_fraction is not None:
        # The tiny epsilon keeps 0.3 x 10 at 3, not 4 (0.30000000000000004 x 10).
        wanted = math.ceil(spec.client_fraction * eligible - 1e-9)
    else:
        wanted = eligible
    if spec.mode is not JobMode.CENTRALIZED:
        wanted = max(wanted, spec.min_clients)
    return max(0, min(wanted, eligible))


def select_clients(
    spec: JobSpec, eligible: Sequence[str], *, seed: int, round: int, attempt: int
) -> list[str]:
    """Sample the round's trainers, reproducibly for ``(seed, round, attempt)``.

    Returns the selected ids in sorted order.
    """
    pool = sorted(eligible)
    rng = random.Random(f"{seed}:{round}:{attempt}")
    return sorted(rng.sample(pool, round_size(spec, len(pool))))
