"""Job lifecycle events: requested, accepted or rejected, cancelled, completed or failed."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field

from fedbus.events.envelope import Event, Int32, Int64, Metrics, Record
from fedbus.events.records import (
    JobMode,
    JobStatus,
    LoraSpec,
    ModelOptions,
    ModelRef,
    PrivacyGuarantee,
    PrivacySpec,
    StrategySpec,
    TrainingConfig,
)

__all__ = [
    "TENANT_PATTERN",
    "JobAccepted",
    "JobCancelRequested",
    "JobCompleted",
    "JobFailed",
    "JobRejected",
    "JobRequested",
    "JobSpec",
    "RejectionReason",
    "check_tenant",
]

TENANT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""A tenant that may have an outside producer: it names a principal and two topics."""


def check_tenant(tenant: str) -> str:
    """``tenant`` when it may have an outside producer; else a ``ValueError`` saying why.

    1 to 100 letters, digits, ``.``, ``_`` and ``-`` (not first), and not ``dlq`` (its intake
    topic would be the intake family's dead-letter topic).
    """
    if not TENANT_PATTERN.fullmatch(tenant):
        raise ValueError(
            f"tenant {tenant!r}: use 1 to 100 letters, digits, '.', '_' and '-' (not first); "
            "it names a Kafka principal and its topics"
        )
    if tenant == "dlq":
        raise ValueError("tenant 'dlq' is reserved (upstream.job.requested.dlq)")
    return tenant


class JobSpec(Record):
    """What to train, on what, and under which privacy rules.

    The model checks types only, leniently (it ignores unknown fields, so an older reader
    can read a newer event). :func:`fedbus.jobspec.check_spec` checks a spec as JSON strictly
    (unknown fields, types) and :func:`fedbus.jobspec.spec_problems` the semantic rules
    (``rounds >= 1``, a clipping norm with DP, each strategy's options, ...): the gateway
    answers 422 with them, orchestration ``job.rejected``.
    """

    mode: JobMode
    model: str
    model_options: ModelOptions = Field(default_factory=dict)
    dataset: str
    rounds: Int32
    clients_per_round: Int32 | None = None
    client_fraction: float | None = None
    min_clients: Int32 = 1
    round_deadline_seconds: Int32 = 600
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    strategy: StrategySpec = Field(default_factory=StrategySpec)
    privacy: PrivacySpec = Field(default_factory=PrivacySpec)
    lora: LoraSpec | None = None
    seed: Int64 | None = None


class RejectionReason(Record):
    """One machine-readable reason a job request was refused."""

    code: str
    field: str | None = None
    message: str


class JobRequested(Event):
    """Someone asks fedbus to run a training job."""

    SCHEMA_VERSION: ClassVar[int] = 3

    type: Literal["job.requested"] = "job.requested"
    tenant: str
    idempotency_key: str | None = None
    spec: JobSpec


class JobAccepted(Event):
    """Orchestration accepted a job; ``spec`` is the effective spec."""

    SCHEMA_VERSION: ClassVar[int] = 3

    type: Literal["job.accepted"] = "job.accepted"
    tenant: str
    request_event_id: str
    spec: JobSpec


class JobRejected(Event):
    """Orchestration refused a job request; nothing will run."""

    type: Literal["job.rejected"] = "job.rejected"
    tenant: str
    request_event_id: str
    reasons: list[RejectionReason]


class JobCancelRequested(Event):
    """Someone asks to stop a job; it ends with status ``cancelled``."""

    type: Literal["job.cancel.requested"] = "job.cancel.requested"
    tenant: str
    requested_by: str
    reason: str | None = None


class JobCompleted(Event):
    """A job ended without failing: done, budget exhausted, or cancelled."""

    SCHEMA_VERSION: ClassVar[int] = 2

    type: Literal["job.completed"] = "job.completed"
    status: JobStatus
    rounds_completed: Int32
    final_model: ModelRef | None = None
    metrics: Metrics = Field(default_factory=dict)
    guarantee: PrivacyGuarantee | None = None


class JobFailed(Event):
    """A job stopped on an error and will not continue."""

    type: Literal["job.failed"] = "job.failed"
    code: str
    message: str
    round: Int32 | None = None
    rounds_completed: Int32 = 0
