"""How orchestration's records map to the rows and JSON of its PostgreSQL tables."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from fedbus.events import Event, JobSpec, ModelRef, TrainerStatus, decode, encode
from fedbus.privacy import GaussianSteps
from fedbus_orchestration.lifetime import ClientSpend
from fedbus_orchestration.selection import TrainerInfo
from fedbus_orchestration.state import Budget, Job, JobState

__all__ = [
    "JOB_COLUMNS",
    "events_from_json",
    "events_json",
    "job_args",
    "job_from_row",
    "spend_from_row",
    "trainer_from_row",
    "update_args",
]

JOB_COLUMNS = (
    "job_id, tenant, spec, state, round, attempt, deadline, selected, global_model, "
    "previous_model, rollbacks, rounds_completed, last_loss, metrics, idempotency_key, "
    "request_event_id, traceparent, noise_multiplier, budget, version, declined"
)
"""The columns of ``orchestration_jobs`` in the order of :func:`job_args`."""


def _ref(raw: str | None) -> ModelRef | None:
    return None if raw is None else ModelRef.model_validate_json(raw)


def _dump_ref(ref: ModelRef | None) -> str | None:
    return None if ref is None else ref.model_dump_json()


def _dump_budget(budget: Budget | None) -> str | None:
    return None if budget is None else json.dumps(dataclasses.asdict(budget))


def _budget(raw: str | None) -> Budget | None:
    return None if raw is None else Budget(**json.loads(raw))


def _dump_declined(declined: dict[str, datetime | None]) -> str:
    return json.dumps({c: None if t is None else t.isoformat() for c, t in declined.items()})


def _declined(raw: str | None) -> dict[str, datetime | None]:
    loaded: dict[str, str | None] = json.loads(raw) if raw else {}
    return {c: None if t is None else datetime.fromisoformat(t) for c, t in loaded.items()}


def job_args(job: Job) -> list[Any]:
    """The values of :data:`JOB_COLUMNS` for ``job``."""
    return [
        job.job_id, job.tenant, job.spec.model_dump_json(), job.state.value, job.round,
        job.attempt, job.deadline, json.dumps(list(job.selected)), _dump_ref(job.global_model),
        _dump_ref(job.previous_model), job.rollbacks, job.rounds_completed, job.last_loss,
        json.dumps(job.metrics), job.idempotency_key, job.request_event_id, job.traceparent,
        job.noise_multiplier, _dump_budget(job.budget), job.version,
        _dump_declined(job.declined),
    ]  # fmt: skip


def update_args(job: Job) -> list[Any]:
    """The parameters of the conditional update: job id, version read, then what changes."""
    args = job_args(job)
    # job_id, version, the mutable columns state .. metrics (positions 3 to 13), then
    # noise_multiplier and budget, then declined.
    return [job.job_id, job.version, *args[3:14], *args[17:19], args[20]]


def job_from_row(row: asyncpg.Record) -> Job:
    """The job a row of ``orchestration_jobs`` holds."""
    return Job(
        job_id=row["job_id"], tenant=row["tenant"],
        spec=JobSpec.model_validate_json(row["spec"]), state=JobState(row["state"]),
        round=row["round"], attempt=row["attempt"], deadline=row["deadline"],
        selected=tuple(json.loads(row["selected"])), global_model=_ref(row["global_model"]),
        previous_model=_ref(row["previous_model"]), rollbacks=row["rollbacks"],
        rounds_completed=row["rounds_completed"], last_loss=row["last_loss"],
        metrics=json.loads(row["metrics"]), idempotency_key=row["idempotency_key"],
        request_event_id=row["request_event_id"], traceparent=row["traceparent"],
        noise_multiplier=row["noise_multiplier"], budget=_budget(row["budget"]),
        version=row["version"], declined=_declined(row["declined"]),
    )  # fmt: skip


def trainer_from_row(row: asyncpg.Record) -> TrainerInfo:
    """The heartbeat a row of ``orchestration_trainers`` holds."""
    return TrainerInfo(
        client_id=row["client_id"], datasets=json.loads(row["datasets"]), device=row["device"],
        status=TrainerStatus(row["status"]), last_seen=row["last_seen"],
        interval_seconds=row["interval_seconds"], active_jobs=tuple(json.loads(row["active_jobs"])),
        capabilities=json.loads(row["capabilities"]),
    )  # fmt: skip


def spend_from_row(row: asyncpg.Record) -> ClientSpend:
    """The lifetime spend a row of ``orchestration_client_spend`` holds."""
    return ClientSpend(
        client_id=row["client_id"], dataset=row["dataset"], entries=row["entries"],
        mechanisms=tuple(GaussianSteps(*m) for m in json.loads(row["mechanisms"])),
        rounds={job: tuple(r) for job, r in json.loads(row["rounds"]).items()},
    )  # fmt: skip


def events_json(events: Sequence[Event]) -> str:
    """Events as the JSON array of encoded events the outbox stores."""
    return json.dumps([encode(e).decode("utf-8") for e in events])


def events_from_json(raw: str) -> list[Event]:
    """The events of an outbox row."""
    return [decode(text.encode("utf-8")) for text in json.loads(raw)]
