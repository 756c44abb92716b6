"""What orchestration knows of a job: its stored record, its limits and its latest budget.

Plain frozen records, no I/O; :mod:`fedbus_orchestration.jobs` moves a :class:`Job` from
one state to the next and the store persists it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from fedbus.events import (
    BudgetUpdated,
    Event,
    JobSpec,
    ModelRef,
    PrivacyGuarantee,
    PrivacyMode,
)

__all__ = [
    "ACCOUNTANT",
    "Budget",
    "Job",
    "JobState",
    "Policy",
    "Transition",
    "effective_spec",
    "seed_for",
]

ACCOUNTANT = "rdp"
"""How the privacy-accountant computes epsilon (``fedbus.privacy``: RDP, dp-accounting)."""


class JobState(StrEnum):
    """Where a job is; the last three are final."""

    ACCEPTED = "accepted"
    RUNNING = "running"
    AWAITING_BUDGET = "awaiting_budget"
    """A DP job's round completed; the next starts once the accountant has counted it."""
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        """True for completed, failed and cancelled."""
        return self in {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}


@dataclass(frozen=True)
class Policy:
    """The limits of retries and rollbacks."""

    max_round_retries: int = 2
    max_rollbacks: int = 2
    divergence_factor: float = 10.0
    round_grace_seconds: float = 5.0


@dataclass(frozen=True)
class Budget:
    """The latest ``budget.updated`` of a job: what its guarantee is after ``round``."""

    round: int
    epsilon_spent: float
    delta: float
    exhausted: bool

    @classmethod
    def of(cls, event: BudgetUpdated) -> Budget:
        """The budget an event reports (``round`` 0 for the initial one)."""
        return cls(
            round=event.round or 0, epsilon_spent=event.total.epsilon_spent,
            delta=event.total.delta, exhausted=event.exhausted,
        )  # fmt: skip


@dataclass(frozen=True)
class Job:
    """A job as orchestration stores it. ``version`` guards concurrent updates."""

    job_id: str
    tenant: str
    spec: JobSpec
    request_event_id: str
    traceparent: str
    idempotency_key: str | None = None
    state: JobState = JobState.ACCEPTED
    round: int = 0
    attempt: int = 0
    deadline: datetime | None = None
    selected: tuple[str, ...] = ()
    global_model: ModelRef | None = None
    previous_model: ModelRef | None = None
    rollbacks: int = 0
    rounds_completed: int = 0
    last_loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    noise_multiplier: float | None = None
    budget: Budget | None = None
    version: int = 0
    declined: dict[str, datetime | None] = field(default_factory=dict)
    """Clients whose site declines the job, and until when (None: for the rest of the job)."""

    @property
    def seed(self) -> int:
        """The job's seed (the effective spec always has one)."""
        return self.spec.seed if self.spec.seed is not None else seed_for(self.job_id)

    @property
    def private(self) -> bool:
        """True for a DP job (local or central)."""
        return self.spec.privacy.mode is not PrivacyMode.NONE

    def guarantee(self) -> PrivacyGuarantee | None:
        """The guarantee of the latest budget, if the accountant sent one.

        (epsilon, delta) as the accountant computed them (RDP over rounds ``1..budget.round``),
        with the noise multiplier of the last round run and the configured clipping norm.
        """
        if self.budget is None:
            return None
        b = self.budget
        return PrivacyGuarantee(
            mode=self.spec.privacy.mode, epsilon=b.epsilon_spent, delta=b.delta,
            accountant=ACCOUNTANT, noise_multiplier=self.noise_multiplier,
            clipping_norm=self.spec.privacy.clipping_norm, rounds=b.round,
        )  # fmt: skip


@dataclass(frozen=True)
class Transition:
    """A job's new state and the events that announce it (empty: nothing happened)."""

    job: Job
    events: list[Event]


def seed_for(job_id: str) -> int:
    """A reproducible seed for a job that did not choose one."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:4], "big") >> 1


def effective_spec(spec: JobSpec, job_id: str) -> JobSpec:
    """The spec as it will run: the seed filled in when the request left it null."""
    if spec.seed is not None:
        return spec
    return spec.model_copy(update={"seed": seed_for(job_id)})
