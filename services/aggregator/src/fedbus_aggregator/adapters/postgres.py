"""Rounds and updates in PostgreSQL (asyncpg); tables created at start if missing.

A round's ``round.completed`` is written in the same statement that marks it aggregated,
so it is aggregated once and re-emitted unchanged (same event id) when asked again.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, ClassVar

import asyncpg

from fedbus.events import ModelRef, RoundCompleted, RoundStarted, decode, encode
from fedbus.postgres import PostgresStore
from fedbus_aggregator.rounds import (
    RejectCode,
    RoundState,
    RoundStatus,
    UpdateRecord,
    UpdateStatus,
)

__all__ = ["PostgresRoundStore"]

_TABLES = """
CREATE TABLE IF NOT EXISTS aggregator_rounds (
    job_id text NOT NULL,
    round integer NOT NULL,
    version integer NOT NULL,
    selected jsonb NOT NULL,
    min_clients integer NOT NULL,
    deadline timestamptz NOT NULL,
    status text NOT NULL CHECK (status IN ('open', 'aggregated', 'expired')),
    global_model jsonb,
    started jsonb NOT NULL,
    result jsonb,
    server_state jsonb,
    published boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, round)
);
CREATE INDEX IF NOT EXISTS aggregator_rounds_due ON aggregator_rounds (status, deadline);
CREATE TABLE IF NOT EXISTS aggregator_updates (
    job_id text NOT NULL,
    round integer NOT NULL,
    client_id text NOT NULL,
    ref jsonb NOT NULL,
    num_samples bigint NOT NULL,
    metrics jsonb NOT NULL,
    status text NOT NULL CHECK (status IN ('accepted', 'rejected', 'pending')),
    code text,
    reason text,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, round, client_id)
);
"""

_UPSERT_ROUND = """
INSERT INTO aggregator_rounds
    (job_id, round, version, selected, min_clients, deadline, status, global_model, started,
     result, server_state, published, updated_at)
VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8::jsonb, $9::jsonb, NULL, NULL, false, now())
ON CONFLICT (job_id, round) DO UPDATE SET
    version = EXCLUDED.version, selected = EXCLUDED.selected,
    min_clients = EXCLUDED.min_clients, deadline = EXCLUDED.deadline, status = EXCLUDED.status,
    global_model = EXCLUDED.global_model, started = EXCLUDED.started, result = NULL,
    server_state = NULL, published = false, updated_at = now()
"""

_UPSERT_UPDATE = """
INSERT INTO aggregator_updates
    (job_id, round, client_id, ref, num_samples, metrics, status, code, reason)
VALUES ($1, $2, $3, $4::jsonb, $5, $6::jsonb, $7, $8, $9)
ON CONFLICT (job_id, round, client_id) DO UPDATE SET
    ref = EXCLUDED.ref, num_samples = EXCLUDED.num_samples, metrics = EXCLUDED.metrics,
    status = EXCLUDED.status, code = EXCLUDED.code, reason = EXCLUDED.reason,
    recorded_at = now()
"""

_CLOSE = """
UPDATE aggregator_rounds
SET status = $4, result = $5::jsonb, server_state = $6::jsonb, published = $7,
    updated_at = now()
WHERE job_id = $1 AND round = $2 AND version = $3 AND status = 'open'
"""


class PostgresRoundStore(PostgresStore):
    """The :class:`~fedbus_aggregator.store.RoundStore` on PostgreSQL.

    Build it with ``await PostgresRoundStore.create(pool)`` (tables created if missing).
    Queries go straight to the pool: a lost connection is not a
    :class:`~fedbus.errors.RetryableError` here but ends the process, whose restart
    picks the round up again from the store and the uncommitted events.
    """

    DDL: ClassVar[str] = _TABLES

    async def get(self, job_id: str, round_: int) -> RoundState | None:
        """See :class:`~fedbus_aggregator.store.RoundStore`."""
        row = await self._pool.fetchrow(
            "SELECT * FROM aggregator_rounds WHERE job_id = $1 AND round = $2", job_id, round_
        )
        if row is None:
            return None
        updates = await self.updates(job_id, round_)
        return _round(row, updates)

    async def updates(self, job_id: str, round_: int) -> dict[str, UpdateRecord]:
        """See :class:`~fedbus_aggregator.store.RoundStore`."""
        rows = await self._pool.fetch(
            "SELECT * FROM aggregator_updates WHERE job_id = $1 AND round = $2 ORDER BY client_id",
            job_id,
            round_,
        )
        return {r["client_id"]: _update(r) for r in rows}

    async def save_started(self, state: RoundState) -> None:
        """See :class:`~fedbus_aggregator.store.RoundStore`."""
        started = state.started
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                _UPSERT_ROUND,
                state.job_id,
                state.round,
                state.version,
                json.dumps(list(started.selected_clients)),
                started.min_clients,
                started.deadline,
                state.status.value,
                _ref_json(started.global_model),
                encode(started).decode(),
            )
            await conn.execute(
                "DELETE FROM aggregator_updates WHERE job_id = $1 AND round = $2 "
                "AND NOT (client_id = ANY($3::text[]))",
                state.job_id,
                state.round,
                list(state.updates),
            )
            for record in state.updates.values():
                await conn.execute(_UPSERT_UPDATE, *_update_args(state.job_id, state.round, record))

    async def record_update(self, job_id: str, round_: int, record: UpdateRecord) -> None:
        """See :class:`~fedbus_aggregator.store.RoundStore`."""
        await self._pool.execute(_UPSERT_UPDATE, *_update_args(job_id, round_, record))

    async def close(
        self,
        state: RoundState,
        *,
        status: RoundStatus,
        result: RoundCompleted | None = None,
        server_state: ModelRef | None = None,
        published: bool = False,
    ) -> bool:
        """See :class:`~fedbus_aggregator.store.RoundStore`."""
        outcome = await self._pool.execute(
            _CLOSE,
            state.job_id,
            state.round,
            state.version,
            status.value,
            encode(result).decode() if result is not None else None,
            _ref_json(server_state),
            published,
        )
        return str(outcome).endswith(" 1")

    async def mark_published(self, job_id: str, round_: int) -> None:
        """See :class:`~fedbus_aggregator.store.RoundStore`."""
        await self._pool.execute(
            "UPDATE aggregator_rounds SET published = true WHERE job_id = $1 AND round = $2",
            job_id,
            round_,
        )

    async def due(self, now: datetime) -> list[tuple[str, int]]:
        """See :class:`~fedbus_aggregator.store.RoundStore`."""
        rows = await self._pool.fetch(
            "SELECT job_id, round FROM aggregator_rounds "
            "WHERE (status = 'open' AND deadline <= $1) "
            "OR (status = 'aggregated' AND NOT published) ORDER BY job_id, round",
            now,
        )
        return [(r["job_id"], r["round"]) for r in rows]

    async def previous_server_state(self, job_id: str, round_: int) -> ModelRef | None:
        """See :class:`~fedbus_aggregator.store.RoundStore`."""
        raw = await self._pool.fetchval(
            "SELECT server_state FROM aggregator_rounds WHERE job_id = $1 AND round < $2 "
            "AND status = 'aggregated' ORDER BY round DESC LIMIT 1",
            job_id,
            round_,
        )
        return ModelRef.model_validate_json(raw) if raw else None


def _ref_json(ref: ModelRef | None) -> str | None:
    return ref.model_dump_json() if ref is not None else None


def _update_args(job_id: str, round_: int, record: UpdateRecord) -> tuple[Any, ...]:
    return (
        job_id,
        round_,
        record.client_id,
        record.ref.model_dump_json(),
        record.num_samples,
        json.dumps(dict(record.metrics)),
        record.status.value,
        record.code.value if record.code else None,
        record.reason,
    )


def _update(row: asyncpg.Record) -> UpdateRecord:
    return UpdateRecord(
        client_id=row["client_id"],
        ref=ModelRef.model_validate_json(row["ref"]),
        num_samples=int(row["num_samples"]),
        metrics={k: float(v) for k, v in json.loads(row["metrics"]).items()},
        status=UpdateStatus(row["status"]),
        code=RejectCode(row["code"]) if row["code"] else None,
        reason=row["reason"],
    )


def _round(row: asyncpg.Record, updates: dict[str, UpdateRecord]) -> RoundState:
    started = decode(row["started"].encode())
    result = decode(row["result"].encode()) if row["result"] else None
    if not isinstance(started, RoundStarted) or not isinstance(result, RoundCompleted | None):
        raise TypeError(f"round {row['job_id']}/{row['round']} holds events of the wrong type")
    return RoundState(
        job_id=row["job_id"],
        round=int(row["round"]),
        started=started,
        status=RoundStatus(row["status"]),
        version=int(row["version"]),
        updates=updates,
        result=result,
        server_state=ModelRef.model_validate_json(row["server_state"])
        if row["server_state"]
        else None,
        published=bool(row["published"]),
    )
