"""Pure registry logic: model names, what a version records, when a job is ready to register.

No I/O here: the handlers gather a job's facts from the store and ask this module what to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from fedbus.events import (
    JobCompleted,
    JobSpec,
    JobStatus,
    ModelRef,
    PrivacyGuarantee,
    PrivacyMode,
    StrategySpec,
)

__all__ = [
    "JobInfo",
    "ModelSummary",
    "ModelVersion",
    "NewVersion",
    "RoundRecord",
    "is_registrable",
    "missing_rounds",
    "model_name",
    "new_version",
]


def model_name(spec: JobSpec) -> str:
    """The registered name of a job's model: ``<spec.model>-<spec.dataset>``."""
    return f"{spec.model}-{spec.dataset}"


@dataclass(frozen=True)
class JobInfo:
    """What ``job.accepted`` told the registry about a job."""

    job_id: str
    tenant: str
    spec: JobSpec


@dataclass(frozen=True)
class RoundRecord:
    """One ``round.completed`` of a job (a retried round keeps only its latest outcome)."""

    round: int
    participants: tuple[str, ...]
    metrics: dict[str, float]
    global_model: ModelRef


@dataclass(frozen=True)
class NewVersion:
    """Everything a version records except what the store assigns (number, parent, time)."""

    tenant: str
    name: str
    job_id: str
    status: JobStatus
    rounds: int
    metrics: dict[str, float]
    artifact: ModelRef
    strategy: StrategySpec
    privacy_mode: PrivacyMode
    guarantee: PrivacyGuarantee | None
    participants: tuple[str, ...]
    round_metrics: tuple[tuple[int, dict[str, float]], ...] = field(default=())


@dataclass(frozen=True)
class ModelVersion:
    """A registered version: a :class:`NewVersion` plus its number, parent and creation time."""

    spec: NewVersion
    version: int
    parent_version: int | None
    created_at: datetime


@dataclass(frozen=True)
class ModelSummary:
    """A model name of a tenant with its newest version."""

    name: str
    latest_version: int
    updated_at: datetime


def is_registrable(event: JobCompleted, *, register_cancelled: bool = False) -> bool:
    """Whether a finished job yields a version.

    Completed and budget-exhausted jobs with a final model do; cancelled jobs only when
    ``register_cancelled`` (a cancelled job's last global model was abandoned by its owner,
    so by default it must not become a tenant's "latest" version); no final model, no version.
    """
    if event.final_model is None:
        return False
    if event.status is JobStatus.CANCELLED:
        return register_cancelled
    return True


def missing_rounds(rounds_completed: int, recorded: Iterable[int]) -> list[int]:
    """Round numbers ``1..rounds_completed`` with no ``round.completed`` recorded yet.

    ``job.completed`` and the last ``round.completed`` travel on different topics, so the
    registry may see the end of a job before its last round; it waits for the rounds.
    """
    have = set(recorded)
    return [r for r in range(1, rounds_completed + 1) if r not in have]


def new_version(job: JobInfo, rounds: Sequence[RoundRecord], done: JobCompleted) -> NewVersion:
    """The version to register for a finished job.

    Metrics are ``job.completed``'s, or the last round's when it carries none; participants
    are the union over every recorded round, sorted.
    """
    if done.final_model is None:
        raise ValueError(f"job {done.job_id} has no final model to register")
    ordered = sorted(rounds, key=lambda r: r.round)
    metrics = dict(done.metrics) or (dict(ordered[-1].metrics) if ordered else {})
    participants = sorted({client for r in ordered for client in r.participants})
    return NewVersion(
        tenant=job.tenant,
        name=model_name(job.spec),
        job_id=job.job_id,
        status=done.status,
        rounds=done.rounds_completed,
        metrics=metrics,
        artifact=done.final_model,
        strategy=job.spec.strategy,
        privacy_mode=job.spec.privacy.mode,
        guarantee=done.guarantee,
        participants=tuple(participants),
        round_metrics=tuple((r.round, dict(r.metrics)) for r in ordered),
    )
