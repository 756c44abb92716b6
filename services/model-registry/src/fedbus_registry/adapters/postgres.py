"""Registry metadata in PostgreSQL (asyncpg); tables are created at start if missing.

Version numbers come from a per-(tenant, name) counter row bumped with
``INSERT ... ON CONFLICT DO UPDATE`` inside the registering transaction: the row lock makes
concurrent registrations of one name wait for each other, so numbers never collide, and a
transaction that fails (a job registered twice at once) rolls its bump back. Registering and
refusing a job take the same transaction-scoped advisory lock on its id, so a job ends up
registered or refused, never both.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, ClassVar

import asyncpg

from fedbus.errors import NonRetryableError
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
from fedbus.postgres import PostgresStore
from fedbus_registry.versions import (
    JobInfo,
    LedgerEntry,
    ModelSummary,
    ModelVersion,
    NewVersion,
    RoundRecord,
)

__all__ = ["PostgresRegistryStore"]

_TABLES = """
CREATE TABLE IF NOT EXISTS registry_jobs (
    job_id text PRIMARY KEY,
    tenant text NOT NULL,
    spec jsonb NOT NULL,
    accepted_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS registry_rounds (
    job_id text NOT NULL,
    round integer NOT NULL,
    participants text[] NOT NULL,
    metrics jsonb NOT NULL,
    global_model jsonb NOT NULL,
    completed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, round)
);
CREATE TABLE IF NOT EXISTS registry_completions (
    job_id text PRIMARY KEY,
    event jsonb NOT NULL
);
ALTER TABLE registry_completions
    ADD COLUMN IF NOT EXISTS received_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE registry_rounds ADD COLUMN IF NOT EXISTS base_model jsonb;
CREATE TABLE IF NOT EXISTS registry_ledger (
    job_id text NOT NULL,
    round integer NOT NULL,
    epsilon_spent double precision NOT NULL,
    delta double precision NOT NULL,
    exhausted boolean NOT NULL,
    PRIMARY KEY (job_id, round)
);
CREATE TABLE IF NOT EXISTS registry_refusals (
    job_id text PRIMARY KEY,
    reason text NOT NULL,
    refused_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS registry_models (
    tenant text NOT NULL,
    name text NOT NULL,
    latest_version integer NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE IF NOT EXISTS registry_versions (
    tenant text NOT NULL,
    name text NOT NULL,
    version integer NOT NULL,
    job_id text NOT NULL UNIQUE,
    status text NOT NULL,
    rounds integer NOT NULL,
    metrics jsonb NOT NULL,
    round_metrics jsonb NOT NULL,
    artifact_key text NOT NULL,
    artifact_size bigint NOT NULL,
    artifact_sha256 text NOT NULL,
    strategy jsonb NOT NULL,
    privacy_mode text NOT NULL,
    guarantee jsonb,
    participants text[] NOT NULL,
    parent_version integer,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, name, version)
);
ALTER TABLE registry_versions ADD COLUMN IF NOT EXISTS base_model jsonb;
"""

_BUMP = """
INSERT INTO registry_models (tenant, name, latest_version, updated_at) VALUES ($1, $2, 1, now())
ON CONFLICT (tenant, name) DO UPDATE
SET latest_version = registry_models.latest_version + 1, updated_at = now()
RETURNING latest_version"""

_INSERT_VERSION = """
INSERT INTO registry_versions (tenant, name, version, job_id, status, rounds, metrics,
    round_metrics, artifact_key, artifact_size, artifact_sha256, strategy, privacy_mode,
    guarantee, participants, parent_version, base_model)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10, $11, $12::jsonb, $13,
    $14::jsonb, $15, $16, $17::jsonb)
RETURNING *"""

_LOCK_JOB = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"


class PostgresRegistryStore(PostgresStore):
    """:class:`~fedbus_registry.store.RegistryStore` on PostgreSQL.

    Build it with ``await PostgresRegistryStore.create(pool)`` (tables created if missing);
    connection trouble surfaces as :class:`~fedbus.errors.RetryableError`.
    """

    DDL: ClassVar[str] = _TABLES

    async def save_job(self, job: JobInfo) -> None:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO registry_jobs (job_id, tenant, spec) VALUES ($1, $2, $3::jsonb) "
                "ON CONFLICT (job_id) DO NOTHING",
                job.job_id,
                job.tenant,
                job.spec.model_dump_json(),
            )

    async def job(self, job_id: str) -> JobInfo | None:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        async with self._connection() as conn:
            row = await conn.fetchrow(
                "SELECT tenant, spec FROM registry_jobs WHERE job_id = $1", job_id
            )
        if row is None:
            return None
        return JobInfo(job_id, row["tenant"], JobSpec.model_validate_json(row["spec"]))

    async def save_round(self, job_id: str, record: RoundRecord) -> None:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO registry_rounds (job_id, round, participants, metrics, global_model, "
                "base_model) VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6::jsonb) "
                "ON CONFLICT (job_id, round) DO UPDATE "
                "SET participants = $3, metrics = $4::jsonb, global_model = $5::jsonb, "
                "base_model = $6::jsonb, completed_at = now()",
                job_id,
                record.round,
                list(record.participants),
                json.dumps(record.metrics),
                record.global_model.model_dump_json(),
                _base_json(record.base_model),
            )

    async def rounds(self, job_id: str) -> list[RoundRecord]:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT * FROM registry_rounds WHERE job_id = $1 ORDER BY round", job_id
            )
        return [
            RoundRecord(
                round=row["round"],
                participants=tuple(row["participants"]),
                metrics=json.loads(row["metrics"]),
                global_model=ModelRef.model_validate_json(row["global_model"]),
                base_model=_base(row["base_model"]),
            )
            for row in rows
        ]

    async def save_completion(self, event: JobCompleted) -> None:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO registry_completions (job_id, event) VALUES ($1, $2::jsonb) "
                "ON CONFLICT (job_id) DO NOTHING",
                event.job_id,
                event.model_dump_json(),
            )

    async def completion(self, job_id: str) -> JobCompleted | None:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        async with self._connection() as conn:
            raw = await conn.fetchval(
                "SELECT event FROM registry_completions WHERE job_id = $1", job_id
            )
        return None if raw is None else JobCompleted.model_validate_json(raw)

    async def save_ledger(self, job_id: str, entry: LedgerEntry) -> None:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO registry_ledger (job_id, round, epsilon_spent, delta, exhausted) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, round) DO NOTHING",
                job_id,
                entry.round,
                entry.epsilon_spent,
                entry.delta,
                entry.exhausted,
            )

    async def ledger(self, job_id: str) -> list[LedgerEntry]:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT round, epsilon_spent, delta, exhausted FROM registry_ledger "
                "WHERE job_id = $1 ORDER BY round",
                job_id,
            )
        return [
            LedgerEntry(r["round"], r["epsilon_spent"], r["delta"], r["exhausted"]) for r in rows
        ]

    async def overdue(self, before: datetime) -> list[JobCompleted]:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT c.event FROM registry_completions c WHERE c.received_at < $1 "
                "AND NOT EXISTS (SELECT 1 FROM registry_versions v WHERE v.job_id = c.job_id) "
                "AND NOT EXISTS (SELECT 1 FROM registry_refusals r WHERE r.job_id = c.job_id) "
                "ORDER BY c.job_id",
                before,
            )
        return [JobCompleted.model_validate_json(r["event"]) for r in rows]

    async def refuse(self, job_id: str, reason: str) -> bool:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        async with self._connection() as conn, conn.transaction():
            await conn.execute(_LOCK_JOB, job_id)
            if await conn.fetchval("SELECT 1 FROM registry_versions WHERE job_id = $1", job_id):
                return False
            inserted = await conn.fetchval(
                "INSERT INTO registry_refusals (job_id, reason) VALUES ($1, $2) "
                "ON CONFLICT (job_id) DO NOTHING RETURNING true",
                job_id,
                reason,
            )
            return bool(inserted)

    async def refusal(self, job_id: str) -> str | None:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        async with self._connection() as conn:
            reason: str | None = await conn.fetchval(
                "SELECT reason FROM registry_refusals WHERE job_id = $1", job_id
            )
        return reason

    async def register(self, new: NewVersion) -> tuple[ModelVersion, bool]:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        try:
            async with self._connection() as conn, conn.transaction():
                await conn.execute(_LOCK_JOB, new.job_id)
                existing = await conn.fetchrow(
                    "SELECT * FROM registry_versions WHERE job_id = $1", new.job_id
                )
                if existing is not None:
                    return _version(existing), False
                refused = await conn.fetchval(
                    "SELECT reason FROM registry_refusals WHERE job_id = $1", new.job_id
                )
                if refused is not None:
                    raise NonRetryableError(f"job {new.job_id} was refused: {refused}")
                number = await conn.fetchval(_BUMP, new.tenant, new.name)
                row = await conn.fetchrow(_INSERT_VERSION, *_version_values(new, number))
                return _version(row), True
        except asyncpg.UniqueViolationError:
            # The same job was registered concurrently: that transaction won, ours rolled back.
            found = await self.version_for_job(new.job_id)
            if found is None:
                raise
            return found, False

    async def version_for_job(self, job_id: str) -> ModelVersion | None:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        return await self._one("SELECT * FROM registry_versions WHERE job_id = $1", job_id)

    async def models(self, tenant: str) -> list[ModelSummary]:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT name, latest_version, updated_at FROM registry_models "
                "WHERE tenant = $1 ORDER BY name",
                tenant,
            )
        return [ModelSummary(r["name"], r["latest_version"], r["updated_at"]) for r in rows]

    async def versions(self, tenant: str, name: str) -> list[ModelVersion]:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT * FROM registry_versions WHERE tenant = $1 AND name = $2 ORDER BY version",
                tenant,
                name,
            )
        return [_version(row) for row in rows]

    async def version(self, tenant: str, name: str, number: int) -> ModelVersion | None:
        """See :class:`~fedbus_registry.store.RegistryStore`."""
        return await self._one(
            "SELECT * FROM registry_versions WHERE tenant = $1 AND name = $2 AND version = $3",
            tenant,
            name,
            number,
        )

    async def _one(self, query: str, *args: object) -> ModelVersion | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(query, *args)
        return None if row is None else _version(row)


def _version_values(new: NewVersion, number: int) -> tuple[object, ...]:
    guarantee = new.guarantee.model_dump_json() if new.guarantee else None
    return (
        new.tenant,
        new.name,
        number,
        new.job_id,
        new.status.value,
        new.rounds,
        json.dumps(new.metrics),
        json.dumps([[r, m] for r, m in new.round_metrics]),
        new.artifact.object_key,
        new.artifact.size_bytes,
        new.artifact.sha256,
        new.strategy.model_dump_json(),
        new.privacy_mode.value,
        guarantee,
        list(new.participants),
        number - 1 if number > 1 else None,
        _base_json(new.base_model),
    )


def _base_json(base: BaseModelRef | None) -> str | None:
    return None if base is None else base.model_dump_json()


def _base(raw: str | None) -> BaseModelRef | None:
    return None if raw is None else BaseModelRef.model_validate_json(raw)


def _version(row: Any) -> ModelVersion:
    guarantee = row["guarantee"]
    spec = NewVersion(
        tenant=row["tenant"],
        name=row["name"],
        job_id=row["job_id"],
        status=JobStatus(row["status"]),
        rounds=row["rounds"],
        metrics=json.loads(row["metrics"]),
        artifact=ModelRef(
            object_key=row["artifact_key"],
            size_bytes=row["artifact_size"],
            sha256=row["artifact_sha256"],
        ),
        strategy=StrategySpec.model_validate_json(row["strategy"]),
        privacy_mode=PrivacyMode(row["privacy_mode"]),
        guarantee=PrivacyGuarantee.model_validate_json(guarantee) if guarantee else None,
        participants=tuple(row["participants"]),
        round_metrics=tuple((int(r), dict(m)) for r, m in json.loads(row["round_metrics"])),
        base_model=_base(row["base_model"]),
    )
    return ModelVersion(
        spec=spec,
        version=row["version"],
        parent_version=row["parent_version"],
        created_at=row["created_at"],
    )
