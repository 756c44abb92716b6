"""One contract for AccountantStore, run against the in-memory store and PostgreSQL.

The PostgreSQL run needs the local stack (``make up``) and is marked ``integration``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from fedbus.events import BudgetStatus, BudgetUpdated, PrivacyBudget, PrivacyMode
from fedbus.settings import FedbusSettings, load_settings
from fedbus_accountant.accounting import JobBudget, Spending
from fedbus_accountant.adapters import PostgresAccountantStore
from fedbus_accountant.store import AccountantStore

from .fakes import FakeAccountantStore


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[AccountantStore]:
    if request.param == "memory":
        yield FakeAccountantStore()
        return
    dsn = load_settings(FedbusSettings).postgres_dsn.get_secret_value()
    if not dsn:
        pytest.fail("FEDBUS_POSTGRES_DSN is empty: start the local stack with `make up`")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        yield await PostgresAccountantStore.create(pool)
    finally:
        await pool.close()


def new_job(dataset: str = "mnist") -> JobBudget:
    return JobBudget(f"job-{uuid.uuid4().hex[:8]}", PrivacyMode.LOCAL_DP, 8.0, 1e-5, dataset)


def spending(job: JobBudget, round_: int, *clients: str) -> Spending:
    return Spending(str(uuid.uuid4()), job.job_id, round_, clients, "local-dp",
                    1.1 + round_ / 7, 0.05, 40)  # fmt: skip


def budget_event(job: JobBudget, round_: int, spent: float) -> BudgetUpdated:
    status = BudgetStatus(epsilon_spent=spent, epsilon_remaining=8.0 - spent, delta=1e-5)
    return BudgetUpdated.create(
        source="privacy-accountant", job_id=job.job_id, round=round_,
        budget=PrivacyBudget(epsilon=8.0, delta=1e-5), total=status, clients={"a": status},
        exhausted=False,
    )  # fmt: skip


async def test_a_budget_is_saved_once(store: AccountantStore) -> None:
    job = new_job()
    await store.save_budget(job)
    await store.save_budget(JobBudget(job.job_id, PrivacyMode.CENTRAL_DP, 1.0, 1e-6, "x"))

    assert await store.budget(job.job_id) == job
    assert await store.budget("no-such-job") is None


async def test_spendings_are_keyed_by_event_id_and_read_back_exactly(
    store: AccountantStore,
) -> None:
    job = new_job()
    late, early = spending(job, 2, "a"), spending(job, 1, "b", "c")

    added = [await store.add_spending(s) for s in (late, early, late)]

    assert added == [True, True, False]
    assert await store.spendings(job.job_id) == [early, late]


async def test_spendings_on_a_dataset_span_jobs(store: AccountantStore) -> None:
    dataset = f"ds-{uuid.uuid4().hex[:8]}"
    one, two, other = new_job(dataset), new_job(dataset), new_job()
    rows = [spending(job, 1, "a") for job in (one, two, other)]
    for job in (one, two, other):
        await store.save_budget(job)
    for row in rows:
        await store.add_spending(row)

    found = await store.spendings_on_dataset(dataset)

    assert sorted(s.event_id for s in found) == sorted(r.event_id for r in rows[:2])


async def test_rounds_keep_their_first_completion(store: AccountantStore) -> None:
    job = new_job()
    await store.save_round(job.job_id, 2, ["b"])
    await store.save_round(job.job_id, 1, ["a", "b"])
    await store.save_round(job.job_id, 1, ["z"])

    assert await store.rounds(job.job_id) == {1: ("a", "b"), 2: ("b",)}


async def test_a_rounds_budget_event_is_stored_once(store: AccountantStore) -> None:
    job = new_job()
    first = budget_event(job, 1, 0.1 + 0.2)

    stored = await store.publish(first)
    again = await store.publish(budget_event(job, 1, 5.0))

    assert stored == first
    assert again == first
    assert again.total.epsilon_spent == 0.1 + 0.2  # floats come back bit for bit
    assert await store.published(job.job_id) == {1: first}
