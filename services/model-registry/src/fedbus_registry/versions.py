"""Pure registry logic: model names, what a version records, when a job is ready to register.

No I/O here: the handlers gather a job's facts from the store and ask this module what to do,
including what the accountant's ledger certifies (:func:`ledger_verdict`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from fedbus.events import (
    BaseModelRef,
    JobCompleted,
    JobSpec,
    JobStatus,
    ModelRef,
    PrivacyGuarantee,
    PrivacyMode,
    StrategySpec,
)

__all__ = [
    "EPSILON_RTOL",
    "AwaitLedger",
    "Certified",
    "JobInfo",
    "LedgerEntry",
    "ModelSummary",
    "ModelVersion",
    "NewVersion",
    "Refused",
    "RoundRecord",
    "Verdict",
    "first_missing",
    "is_registrable",
    "ledger_verdict",
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
    base_model: BaseModelRef | None = None


@dataclass(frozen=True)
class LedgerEntry:
    """One ``budget.updated`` of the privacy accountant: a job's total spend after ``round``."""

    round: int
    epsilon_spent: float
    delta: float
    exhausted: bool


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
    base_model: BaseModelRef | None = None
    """With LoRA: the base weights ``artifact``'s adapters apply to (the last round's)."""


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
    return first_missing(rounds_completed, set(recorded))


MISSING_SHOWN = 20
"""At most this many missing round numbers are listed (a claim may name 2**31 rounds)."""


def first_missing(n: int, have: Collection[int], limit: int = MISSING_SHOWN) -> list[int]:
    """The first ``limit`` numbers of ``1..n`` not in ``have``.

    Takes at most ``len(have) + limit`` steps whatever ``n`` is: the round numbers come from
    events, and a forged one must not make the registry walk two billion numbers.
    """
    out: list[int] = []
    r = 1
    while r <= n and len(out) < limit:
        if r not in have:
            out.append(r)
        r += 1
    return out


EPSILON_RTOL = 1e-9
"""How far (relative) a ``job.completed``'s epsilon may be from the ledger's: float noise only."""


@dataclass(frozen=True)
class Certified:
    """The ledger backs the job's end: register it with ``guarantee`` (None: no DP asked)."""

    guarantee: PrivacyGuarantee | None


@dataclass(frozen=True)
class AwaitLedger:
    """A DP job whose ledger lacks the ``budget.updated`` of ``missing`` rounds."""

    missing: list[int]


@dataclass(frozen=True)
class Refused:
    """The ``job.completed`` claims what the ledger does not say; nothing is registered."""

    reason: str


Verdict = Certified | AwaitLedger | Refused
"""What :func:`ledger_verdict` decides."""


def ledger_verdict(
    job: JobInfo,
    done: JobCompleted,
    ledger: Sequence[LedgerEntry],
    *,
    rounds_seen: Iterable[int] = (),
) -> Verdict:
    """Whether the accountant's ``ledger`` certifies the guarantee ``done`` claims.

    A job without DP (``privacy.mode: none``) is certified with no guarantee; one whose
    ``job.completed`` claims a guarantee anyway is refused.

    A DP job's last round number ``R`` is the largest of ``rounds_completed``, the claim's
    ``rounds`` and the ``round.completed`` numbers seen (``rounds_seen``): a diverged round
    is discarded by orchestration, so its number is not counted in ``rounds_completed``, but
    the accountant charged it and the next round has a higher number. The job needs the
    ledger's entry of every round ``1..R`` (the accountant publishes one ``budget.updated``
    per ``round.completed`` of a DP job, budget-exhausted endings included). Then the claim
    must agree with the entry of round ``R``: the job's mode, epsilon within
    :data:`EPSILON_RTOL`, the same delta. The certified guarantee carries the ledger's
    epsilon and delta and ``rounds = R``; its other fields (accountant, noise multiplier,
    clipping norm) are the ``job.completed``'s. A DP job that ran no round spent nothing:
    it is certified with no guarantee, and refused if it claims one.
    """
    mode, claimed = job.spec.privacy.mode, done.guarantee
    claimed_rounds = claimed.rounds if claimed is not None and claimed.rounds else 0
    n = max(done.rounds_completed, claimed_rounds, max(rounds_seen, default=0))
    if mode is PrivacyMode.NONE:
        if claimed is None:
            return Certified(None)
        return Refused(
            f"job.completed of job {done.job_id} says epsilon {claimed.epsilon!r}, but the job "
            "did not ask for differential privacy (privacy.mode none): the accountant's ledger "
            "certifies nothing for it"
        )
    if n == 0:
        if claimed is None:
            return Certified(None)
        return Refused(
            f"job.completed of job {done.job_id} says epsilon {claimed.epsilon!r}, but the job "
            "ran no round: the accountant's ledger has nothing to certify"
        )
    by_round = {e.round: e for e in ledger}
    missing = first_missing(n, by_round)
    if missing:
        return AwaitLedger(missing)
    last = by_round[n]
    if claimed is None:
        return Refused(
            f"job.completed of job {done.job_id} states no privacy guarantee, the accountant's "
            f"ledger says epsilon {last.epsilon_spent!r} after round {n}"
        )
    problems = []
    if claimed.mode is not mode:
        problems.append(
            f"job.completed says mode {claimed.mode.value}, the job asked for {mode.value}"
        )
    if not math.isclose(claimed.epsilon, last.epsilon_spent, rel_tol=EPSILON_RTOL, abs_tol=1e-12):
        problems.append(
            f"job.completed says epsilon {claimed.epsilon!r}, the accountant's ledger says "
            f"{last.epsilon_spent!r} after round {n}"
        )
    if claimed.delta != last.delta:
        problems.append(
            f"job.completed says delta {claimed.delta!r}, the accountant's ledger says "
            f"{last.delta!r}"
        )
    if problems:
        return Refused(f"job {done.job_id}: " + "; ".join(problems))
    certified = claimed.model_copy(
        update={"epsilon": last.epsilon_spent, "delta": last.delta, "rounds": n}
    )
    return Certified(certified)


def new_version(
    job: JobInfo,
    rounds: Sequence[RoundRecord],
    done: JobCompleted,
    *,
    guarantee: PrivacyGuarantee | None,
) -> NewVersion:
    """The version to register for a finished job, with the ledger-certified ``guarantee``.

    Metrics are ``job.completed``'s, or the last round's when it carries none; participants
    are the union over every recorded round, sorted. A LoRA job's version names the base
    model of its last round (``round.completed.base_model``).
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
        guarantee=guarantee,
        participants=tuple(participants),
        round_metrics=tuple((r.round, dict(r.metrics)) for r in ordered),
        base_model=ordered[-1].base_model if ordered else None,
    )
