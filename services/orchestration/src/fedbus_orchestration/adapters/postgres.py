"""The PostgreSQL :class:`~fedbus_orchestration.store.JobStore` (asyncpg).

Tables (created at start with ``CREATE TABLE IF NOT EXISTS``, see
:class:`fedbus.postgres.PostgresStore`):

- ``orchestration_jobs``: one row per accepted job; ``version`` makes every update
  conditional on what the writer read.
- ``orchestration_outbox``: the events each handled cause emitted, keyed by the cause id.
- ``orchestration_trainers``: the latest heartbeat of each trainer.
- ``orchestration_client_spend``: the latest ``client.budget.updated`` of each client and
  dataset (the one with the most ledger entries).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import asyncpg

from fedbus.events import Event
from fedbus.postgres import PostgresStore, transient_errors
from fedbus_orchestration.adapters.rows import (
    JOB_COLUMNS,
    events_from_json,
    events_json,
    job_args,
    job_from_row,
    spend_from_row,
    trainer_from_row,
    update_args,
)
from fedbus_orchestration.lifetime import ClientSpend
from fedbus_orchestration.selection import TrainerInfo
from fedbus_orchestration.state import Job
from fedbus_orchestration.store import ConcurrentUpdateError, PublishFn

__all__ = ["PostgresJobStore"]

_DDL = """
CREATE TABLE IF NOT EXISTS orchestration_jobs (
    job_id text PRIMARY KEY,
    tenant text NOT NULL,
    spec jsonb NOT NULL,
    state text NOT NULL,
    round integer NOT NULL,
    attempt integer NOT NULL,
    deadline timestamptz,
    selected jsonb NOT NULL,
    global_model jsonb,
    previous_model jsonb,
    rollbacks integer NOT NULL,
    rounds_completed integer NOT NULL,
    last_loss double precision,
    metrics jsonb NOT NULL,
    idempotency_key text,
    request_event_id text NOT NULL,
    traceparent text NOT NULL,
    version integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, idempotency_key)
);
-- Added with DP jobs: the round's noise multiplier and the latest budget.updated.
ALTER TABLE orchestration_jobs ADD COLUMN IF NOT EXISTS noise_multiplier double precision;
ALTER TABLE orchestration_jobs ADD COLUMN IF NOT EXISTS budget jsonb;
-- Added with site policies: clients that declined the job, and until when.
ALTER TABLE orchestration_jobs ADD COLUMN IF NOT EXISTS declined jsonb;
CREATE INDEX IF NOT EXISTS orchestration_jobs_running
    ON orchestration_jobs (deadline) WHERE state = 'running';
CREATE TABLE IF NOT EXISTS orchestration_outbox (
    seq bigserial PRIMARY KEY,
    cause_id text NOT NULL UNIQUE,
    job_id text,
    events jsonb NOT NULL,
    published boolean NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS orchestration_outbox_pending
    ON orchestration_outbox (seq) WHERE NOT published;
CREATE TABLE IF NOT EXISTS orchestration_trainers (
    client_id text PRIMARY KEY,
    datasets jsonb NOT NULL,
    device text NOT NULL,
    status text NOT NULL,
    active_jobs jsonb NOT NULL,
    last_seen timestamptz NOT NULL,
    interval_seconds integer NOT NULL,
    capabilities jsonb NOT NULL DEFAULT '{}'::jsonb
);
ALTER TABLE orchestration_trainers
    ADD COLUMN IF NOT EXISTS capabilities jsonb NOT NULL DEFAULT '{}'::jsonb;
CREATE TABLE IF NOT EXISTS orchestration_client_spend (
    client_id text NOT NULL,
    dataset text NOT NULL,
    entries bigint NOT NULL,
    mechanisms jsonb NOT NULL,
    rounds jsonb NOT NULL,
    PRIMARY KEY (client_id, dataset)
);
"""

_INSERT = f"""
INSERT INTO orchestration_jobs ({JOB_COLUMNS})
VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10::jsonb, $11, $12, $13,
        $14::jsonb, $15, $16, $17, $18, $19::jsonb, $20 + 1, $21::jsonb)
"""  # noqa: S608 (column names are constants)
_UPDATE = """
UPDATE orchestration_jobs SET state = $3, round = $4, attempt = $5, deadline = $6,
    selected = $7::jsonb, global_model = $8::jsonb, previous_model = $9::jsonb,
    rollbacks = $10, rounds_completed = $11, last_loss = $12, metrics = $13::jsonb,
    noise_multiplier = $14, budget = $15::jsonb, declined = $16::jsonb, version = version + 1,
    updated_at = now()
WHERE job_id = $1 AND version = $2
"""
_SAVE_TRAINER = """
INSERT INTO orchestration_trainers AS t
    (client_id, datasets, device, status, active_jobs, last_seen, interval_seconds,
     capabilities)
VALUES ($1, $2::jsonb, $3, $4, $5::jsonb, $6, $7, $8::jsonb)
ON CONFLICT (client_id) DO UPDATE SET datasets = EXCLUDED.datasets, device = EXCLUDED.device,
    status = EXCLUDED.status, active_jobs = EXCLUDED.active_jobs,
    last_seen = EXCLUDED.last_seen, interval_seconds = EXCLUDED.interval_seconds,
    capabilities = EXCLUDED.capabilities
WHERE t.last_seen <= EXCLUDED.last_seen
"""
_SAVE_SPEND = """
INSERT INTO orchestration_client_spend AS s (client_id, dataset, entries, mechanisms, rounds)
VALUES ($1, $2, $3, $4::jsonb, $5::jsonb)
ON CONFLICT (client_id, dataset) DO UPDATE SET entries = EXCLUDED.entries,
    mechanisms = EXCLUDED.mechanisms, rounds = EXCLUDED.rounds
WHERE s.entries < EXCLUDED.entries
"""


class PostgresJobStore(PostgresStore):
    """Jobs, trainers and emitted events in PostgreSQL; every change is one transaction."""

    DDL = _DDL

    async def get(self, job_id: str) -> Job | None:
        """See :class:`~fedbus_orchestration.store.JobStore`."""
        async with transient_errors():
            row = await self._pool.fetchrow(
                "SELECT * FROM orchestration_jobs WHERE job_id = $1", job_id
            )
        return None if row is None else job_from_row(row)

    async def find_by_idempotency_key(self, tenant: str, key: str) -> Job | None:
        """See :class:`~fedbus_orchestration.store.JobStore`."""
        async with transient_errors():
            row = await self._pool.fetchrow(
                "SELECT * FROM orchestration_jobs WHERE tenant = $1 AND idempotency_key = $2",
                tenant,
                key,
            )
        return None if row is None else job_from_row(row)

    async def emitted(self, cause_id: str) -> list[Event] | None:
        """See :class:`~fedbus_orchestration.store.JobStore`."""
        async with transient_errors():
            raw = await self._pool.fetchval(
                "SELECT events FROM orchestration_outbox WHERE cause_id = $1", cause_id
            )
        return None if raw is None else events_from_json(raw)

    async def record(
        self,
        *,
        cause_id: str,
        events: Sequence[Event],
        job: Job | None = None,
        published: bool = True,
    ) -> None:
        """See :class:`~fedbus_orchestration.store.JobStore`."""
        async with self._connection() as conn, conn.transaction():
            if job is not None:
                await self._write_job(conn, job)
            try:
                await conn.execute(
                    "INSERT INTO orchestration_outbox (cause_id, job_id, events, published) "
                    "VALUES ($1, $2, $3::jsonb, $4)",
                    cause_id,
                    job.job_id if job is not None else (events[0].job_id if events else None),
                    events_json(events),
                    published,
                )
            except asyncpg.UniqueViolationError as exc:
                raise ConcurrentUpdateError(f"cause {cause_id} was recorded already") from exc

    @staticmethod
    async def _write_job(conn: asyncpg.Connection, job: Job) -> None:
        if job.version == 0:
            try:
                await conn.execute(_INSERT, *job_args(job))
            except asyncpg.UniqueViolationError as exc:
                raise ConcurrentUpdateError(f"job {job.job_id} exists already") from exc
            return
        status = await conn.execute(_UPDATE, *update_args(job))
        if status != "UPDATE 1":
            raise ConcurrentUpdateError(f"job {job.job_id} changed since it was read")

    async def running(self) -> list[Job]:
        """See :class:`~fedbus_orchestration.store.JobStore`."""
        async with transient_errors():
            rows = await self._pool.fetch(
                "SELECT * FROM orchestration_jobs WHERE state IN ('running', 'awaiting_budget') "
                "ORDER BY deadline"
            )
        return [job_from_row(row) for row in rows]

    async def publish_pending(self, publish: PublishFn) -> int:
        """See :class:`~fedbus_orchestration.store.JobStore`.

        Rows are locked while published (``SKIP LOCKED``: another instance takes others) and
        marked in the same transaction; a crash in between publishes them again, same ids.
        """
        count = 0
        async with self._connection() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT seq, events FROM orchestration_outbox WHERE NOT published "
                "ORDER BY seq LIMIT 100 FOR UPDATE SKIP LOCKED"
            )
            for row in rows:
                events = events_from_json(row["events"])
                await publish(events)
                count += len(events)
            if rows:
                await conn.execute(
                    "UPDATE orchestration_outbox SET published = true WHERE seq = ANY($1)",
                    [row["seq"] for row in rows],
                )
        return count

    async def save_trainer(self, trainer: TrainerInfo) -> None:
        """See :class:`~fedbus_orchestration.store.JobStore`."""
        async with transient_errors():
            await self._pool.execute(
                _SAVE_TRAINER, trainer.client_id, json.dumps(trainer.datasets), trainer.device,
                trainer.status.value, json.dumps(list(trainer.active_jobs)), trainer.last_seen,
                trainer.interval_seconds, json.dumps(trainer.capabilities),
            )  # fmt: skip

    async def trainers(self, dataset: str) -> list[TrainerInfo]:
        """See :class:`~fedbus_orchestration.store.JobStore`."""
        async with transient_errors():
            rows = await self._pool.fetch(
                "SELECT * FROM orchestration_trainers WHERE datasets ? $1", dataset
            )
        return [trainer_from_row(row) for row in rows]

    async def save_client_spend(self, spend: ClientSpend) -> None:
        """See :class:`~fedbus_orchestration.store.JobStore`."""
        mechanisms = [[m.noise_multiplier, m.sample_rate, m.steps] for m in spend.mechanisms]
        rounds = {job: list(r) for job, r in spend.rounds.items()}
        async with transient_errors():
            await self._pool.execute(
                _SAVE_SPEND, spend.client_id, spend.dataset, spend.entries,
                json.dumps(mechanisms), json.dumps(rounds),
            )  # fmt: skip

    async def client_spends(self, dataset: str) -> dict[str, ClientSpend]:
        """See :class:`~fedbus_orchestration.store.JobStore`."""
        async with transient_errors():
            rows = await self._pool.fetch(
                "SELECT * FROM orchestration_client_spend WHERE dataset = $1 ORDER BY client_id",
                dataset,
            )
        return {row["client_id"]: spend_from_row(row) for row in rows}
