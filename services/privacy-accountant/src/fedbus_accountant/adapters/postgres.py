"""The accountant's state in PostgreSQL (asyncpg); tables are created at start if missing.

Every table is prefixed ``accountant_``; :func:`drop_state` removes them all, after which a
new consumer group rebuilds the same numbers from the topics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import asyncpg

from fedbus.events import BudgetUpdated, PrivacyMode
from fedbus.postgres import PostgresStore
from fedbus_accountant.accounting import JobBudget, Spending

__all__ = ["TABLES", "PostgresAccountantStore", "drop_state"]

TABLES = ("accountant_budgets", "accountant_ledger", "accountant_rounds", "accountant_published")

_TABLES = """
CREATE TABLE IF NOT EXISTS accountant_budgets (
    job_id text PRIMARY KEY,
    mode text NOT NULL,
    target_epsilon double precision NOT NULL,
    delta double precision NOT NULL,
    dataset text NOT NULL
);
CREATE TABLE IF NOT EXISTS accountant_ledger (
    event_id text PRIMARY KEY,
    job_id text NOT NULL,
    round integer NOT NULL,
    clients text[] NOT NULL,
    mechanism text NOT NULL,
    noise_multiplier double precision NOT NULL,
    sample_rate double precision NOT NULL,
    steps bigint NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS accountant_ledger_job ON accountant_ledger (job_id);
CREATE TABLE IF NOT EXISTS accountant_rounds (
    job_id text NOT NULL,
    round integer NOT NULL,
    participants text[] NOT NULL,
    PRIMARY KEY (job_id, round)
);
CREATE TABLE IF NOT EXISTS accountant_published (
    job_id text NOT NULL,
    round integer NOT NULL,
    event jsonb NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, round)
);
"""

_SPENDING_COLUMNS = (
    "event_id, job_id, round, clients, mechanism, noise_multiplier, sample_rate, steps"
)


async def drop_state(pool: asyncpg.Pool, *, consumer_group: str | None = None) -> None:
    """Drop every ``accountant_`` table; also forget the events ``consumer_group`` handled.

    Forgetting the handled event ids matters when an operator rewinds the same group instead
    of starting a new one: the rewound events would otherwise be skipped as duplicates.
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"DROP TABLE IF EXISTS {', '.join(TABLES)}")
        exists = await conn.fetchval("SELECT to_regclass('fedbus_processed_events')")
        if consumer_group and exists is not None:
            await conn.execute(
                "DELETE FROM fedbus_processed_events WHERE consumer_group = $1", consumer_group
            )


class PostgresAccountantStore(PostgresStore):
    """:class:`~fedbus_accountant.store.AccountantStore` on PostgreSQL.

    Build it with ``await PostgresAccountantStore.create(pool)`` (tables created if missing, in
    the first schema of the pool's ``search_path``); connection trouble surfaces as
    :class:`~fedbus.errors.RetryableError`.
    """

    DDL: ClassVar[str] = _TABLES

    async def save_budget(self, budget: JobBudget) -> None:
        """See :class:`~fedbus_accountant.store.AccountantStore`."""
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO accountant_budgets (job_id, mode, target_epsilon, delta, dataset) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id) DO NOTHING",
                budget.job_id,
                budget.mode.value,
                budget.target_epsilon,
                budget.delta,
                budget.dataset,
            )

    async def budget(self, job_id: str) -> JobBudget | None:
        """See :class:`~fedbus_accountant.store.AccountantStore`."""
        async with self._connection() as conn:
            row = await conn.fetchrow("SELECT * FROM accountant_budgets WHERE job_id = $1", job_id)
        if row is None:
            return None
        return JobBudget(
            row["job_id"], PrivacyMode(row["mode"]), row["target_epsilon"], row["delta"],
            row["dataset"],
        )  # fmt: skip

    async def add_spending(self, spending: Spending) -> bool:
        """See :class:`~fedbus_accountant.store.AccountantStore`."""
        async with self._connection() as conn:
            inserted = await conn.fetchval(
                f"INSERT INTO accountant_ledger ({_SPENDING_COLUMNS}) "  # noqa: S608
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                "ON CONFLICT (event_id) DO NOTHING RETURNING true",
                spending.event_id,
                spending.job_id,
                spending.round,
                list(spending.clients),
                spending.mechanism,
                spending.noise_multiplier,
                spending.sample_rate,
                spending.steps,
            )
        return bool(inserted)

    async def spendings(self, job_id: str) -> list[Spending]:
        """See :class:`~fedbus_accountant.store.AccountantStore`."""
        return await self._spendings(
            f"SELECT {_SPENDING_COLUMNS} FROM accountant_ledger "  # noqa: S608
            "WHERE job_id = $1 ORDER BY round, event_id",
            job_id,
        )

    async def spendings_on_dataset(self, dataset: str) -> list[Spending]:
        """See :class:`~fedbus_accountant.store.AccountantStore`."""
        columns = ", ".join(f"l.{c.strip()}" for c in _SPENDING_COLUMNS.split(","))
        return await self._spendings(
            f"SELECT {columns} FROM accountant_ledger l "  # noqa: S608
            "JOIN accountant_budgets b ON b.job_id = l.job_id WHERE b.dataset = $1 "
            "ORDER BY l.job_id, l.round, l.event_id",
            dataset,
        )

    async def _spendings(self, query: str, *args: object) -> list[Spending]:
        async with self._connection() as conn:
            rows = await conn.fetch(query, *args)
        return [_spending(r) for r in rows]

    async def save_round(self, job_id: str, round_: int, participants: Sequence[str]) -> None:
        """See :class:`~fedbus_accountant.store.AccountantStore`."""
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO accountant_rounds (job_id, round, participants) VALUES ($1, $2, $3) "
                "ON CONFLICT (job_id, round) DO NOTHING",
                job_id,
                round_,
                list(participants),
            )

    async def rounds(self, job_id: str) -> dict[int, tuple[str, ...]]:
        """See :class:`~fedbus_accountant.store.AccountantStore`."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT round, participants FROM accountant_rounds WHERE job_id = $1 "
                "ORDER BY round",
                job_id,
            )
        return {r["round"]: tuple(r["participants"]) for r in rows}

    async def publish(self, event: BudgetUpdated) -> BudgetUpdated:
        """See :class:`~fedbus_accountant.store.AccountantStore`."""
        round_ = event.round if event.round is not None else 0
        async with self._connection() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO accountant_published (job_id, round, event) "
                "VALUES ($1, $2, $3::jsonb) ON CONFLICT (job_id, round) DO NOTHING",
                event.job_id,
                round_,
                event.model_dump_json(),
            )
            raw = await conn.fetchval(
                "SELECT event FROM accountant_published WHERE job_id = $1 AND round = $2",
                event.job_id,
                round_,
            )
        return BudgetUpdated.model_validate_json(raw)

    async def published(self, job_id: str) -> dict[int, BudgetUpdated]:
        """See :class:`~fedbus_accountant.store.AccountantStore`."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT round, event FROM accountant_published WHERE job_id = $1 ORDER BY round",
                job_id,
            )
        return {r["round"]: BudgetUpdated.model_validate_json(r["event"]) for r in rows}


def _spending(row: Any) -> Spending:
    return Spending(
        event_id=row["event_id"],
        job_id=row["job_id"],
        round=row["round"],
        clients=tuple(row["clients"]),
        mechanism=row["mechanism"],
        noise_multiplier=row["noise_multiplier"],
        sample_rate=row["sample_rate"],
        steps=row["steps"],
    )
