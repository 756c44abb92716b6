"""The job read model in PostgreSQL (asyncpg); tables are created at start."""

from __future__ import annotations

import builtins
import json
from typing import Any, ClassVar

import asyncpg

from fedbus.events import Event, decode, encode
from fedbus.postgres import PostgresStore
from fedbus_gateway.jobs import JobView, ViewStatus, apply
from fedbus_gateway.store import StoredEvent

__all__ = ["PostgresJobStore"]

_TABLES = """
CREATE TABLE IF NOT EXISTS gateway_jobs (
    job_id text PRIMARY KEY,
    tenant text NOT NULL,
    spec jsonb,
    status text NOT NULL,
    current_round integer,
    rounds_completed integer NOT NULL DEFAULT 0,
    metrics jsonb NOT NULL DEFAULT '{}',
    participants jsonb NOT NULL DEFAULT '[]',
    reasons jsonb NOT NULL DEFAULT '[]',
    final_model jsonb,
    idempotency_key text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
ALTER TABLE gateway_jobs ADD COLUMN IF NOT EXISTS privacy jsonb;
CREATE UNIQUE INDEX IF NOT EXISTS gateway_jobs_idempotency
    ON gateway_jobs (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS gateway_jobs_tenant_created
    ON gateway_jobs (tenant, created_at DESC);
CREATE TABLE IF NOT EXISTS gateway_job_events (
    seq bigserial PRIMARY KEY,
    event_id text NOT NULL UNIQUE,
    job_id text NOT NULL,
    payload bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS gateway_job_events_job_seq ON gateway_job_events (job_id, seq);
"""

# The no-op update makes RETURNING give the first row's seq for a redelivered event too
# (DO NOTHING returns no row), also when another replica inserted it.
_RECORD = """
INSERT INTO gateway_job_events (event_id, job_id, payload) VALUES ($1, $2, $3)
ON CONFLICT (event_id) DO UPDATE SET event_id = EXCLUDED.event_id
RETURNING seq
"""

_COLUMNS = (
    "job_id, tenant, spec, status, current_round, rounds_completed, metrics, participants, "
    "reasons, final_model, idempotency_key, created_at, updated_at, privacy"
)
_UPSERT = f"""
INSERT INTO gateway_jobs ({_COLUMNS})
VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7::jsonb, $8::jsonb, $9::jsonb, $10::jsonb, $11, $12, $13,
        $14::jsonb)
ON CONFLICT (job_id) DO UPDATE SET
    spec = EXCLUDED.spec, status = EXCLUDED.status, current_round = EXCLUDED.current_round,
    rounds_completed = EXCLUDED.rounds_completed, metrics = EXCLUDED.metrics,
    participants = EXCLUDED.participants, reasons = EXCLUDED.reasons,
    final_model = EXCLUDED.final_model, idempotency_key = EXCLUDED.idempotency_key,
    updated_at = EXCLUDED.updated_at, privacy = EXCLUDED.privacy
"""  # noqa: S608 - only constant column names are interpolated


class PostgresJobStore(PostgresStore):
    """Job views in table ``gateway_jobs``; see :class:`fedbus_gateway.store.JobStore`.

    Build it with ``await PostgresJobStore.create(pool)`` (tables created if missing);
    connection trouble surfaces as :class:`~fedbus.errors.RetryableError`.
    """

    DDL: ClassVar[str] = _TABLES

    async def claim(self, view: JobView) -> JobView:
        """See :class:`~fedbus_gateway.store.JobStore`."""
        async with self._connection() as conn, conn.transaction():
            existing = await self._by_key(conn, view) or await self._get(conn, view.job_id)
            if existing is not None:
                return existing
            try:
                async with conn.transaction():  # a savepoint: a lost race leaves the tx usable
                    await conn.execute(_UPSERT, *_row(view))
            except asyncpg.UniqueViolationError:
                raced = await self._by_key(conn, view)
                if raced is None:
                    raise
                return raced
            return view

    async def forget(self, job_id: str) -> None:
        """See :class:`~fedbus_gateway.store.JobStore`."""
        async with self._connection() as conn:
            await conn.execute("DELETE FROM gateway_jobs WHERE job_id = $1", job_id)

    async def get(self, job_id: str) -> JobView | None:
        """See :class:`~fedbus_gateway.store.JobStore`."""
        async with self._connection() as conn:
            return await self._get(conn, job_id)

    async def list(
        self, tenant: str, *, status: ViewStatus | None = None, limit: int = 100
    ) -> list[JobView]:
        """See :class:`~fedbus_gateway.store.JobStore`."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM gateway_jobs WHERE tenant = $1 "  # noqa: S608
                "AND ($2::text IS NULL OR status = $2) "
                "ORDER BY created_at DESC, job_id DESC LIMIT $3",
                tenant,
                status.value if status is not None else None,
                limit,
            )
        return [_view(r) for r in rows]

    async def apply(self, event: Event) -> JobView | None:
        """See :class:`~fedbus_gateway.store.JobStore`."""
        async with self._connection() as conn, conn.transaction():
            current = await self._get(conn, event.job_id, lock=True)
            view = apply(current, event)
            if view is None or view == current:
                return view
            try:
                async with conn.transaction():
                    await conn.execute(_UPSERT, *_row(view))
            except asyncpg.UniqueViolationError:
                # An upstream producer reused a key this tenant already has: keep the job,
                # drop the key from it.
                view = view.model_copy(update={"idempotency_key": None})
                await conn.execute(_UPSERT, *_row(view))
            return view

    async def record(self, event: Event) -> int:
        """See :class:`~fedbus_gateway.store.JobStore`."""
        async with self._connection() as conn:
            seq: int = await conn.fetchval(_RECORD, event.event_id, event.job_id, encode(event))
        return seq

    async def events_after(
        self, job_id: str, *, after: int, limit: int = 500
    ) -> builtins.list[StoredEvent]:
        """See :class:`~fedbus_gateway.store.JobStore`."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT seq, payload FROM gateway_job_events WHERE job_id = $1 AND seq > $2 "
                "ORDER BY seq LIMIT $3",
                job_id,
                after,
                limit,
            )
        return [StoredEvent(seq=r["seq"], event=decode(r["payload"])) for r in rows]

    @staticmethod
    async def _get(conn: Any, job_id: str, *, lock: bool = False) -> JobView | None:
        sql = f"SELECT {_COLUMNS} FROM gateway_jobs WHERE job_id = $1"  # noqa: S608
        row = await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), job_id)
        return _view(row) if row is not None else None

    @staticmethod
    async def _by_key(conn: Any, view: JobView) -> JobView | None:
        if view.idempotency_key is None:
            return None
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM gateway_jobs "  # noqa: S608
            "WHERE tenant = $1 AND idempotency_key = $2",
            view.tenant,
            view.idempotency_key,
        )
        return _view(row) if row is not None else None


def _row(view: JobView) -> tuple[Any, ...]:
    data = view.model_dump(mode="json")
    return (
        view.job_id,
        view.tenant,
        json.dumps(data["spec"]) if view.spec is not None else None,
        view.status.value,
        view.current_round,
        view.rounds_completed,
        json.dumps(data["metrics"]),
        json.dumps(data["participants"]),
        json.dumps(data["reasons"]),
        json.dumps(data["final_model"]) if view.final_model is not None else None,
        view.idempotency_key,
        view.created_at,
        view.updated_at,
        json.dumps(data["privacy"]) if view.privacy is not None else None,
    )


def _view(row: Any) -> JobView:
    def load(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    return JobView.model_validate(
        {
            **dict(row),
            "spec": load(row["spec"]),
            "metrics": load(row["metrics"]),
            "participants": load(row["participants"]),
            "reasons": load(row["reasons"]),
            "final_model": load(row["final_model"]),
            "privacy": load(row["privacy"]),
        }
    )
