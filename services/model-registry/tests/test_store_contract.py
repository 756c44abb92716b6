"""One contract for RegistryStore, run against the in-memory store and PostgreSQL.

The PostgreSQL run needs the local stack (``make up``) and is marked ``integration``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

import asyncpg
import pytest

from fedbus.errors import NonRetryableError
from fedbus.events import (
    BaseModelRef,
    JobStatus,
    ModelRef,
    PrivacyGuarantee,
    PrivacyMode,
    Strategy,
    StrategySpec,
    utc_now,
)
from fedbus.settings import FedbusSettings, load_settings
from fedbus_registry.adapters import PostgresRegistryStore
from fedbus_registry.store import RegistryStore
from fedbus_registry.versions import JobInfo, LedgerEntry, NewVersion, RoundRecord

from .fakes import FakeRegistryStore

if TYPE_CHECKING:
    from .conftest import MakeJob

REF = ModelRef(object_key="jobs/j/round-1/global/" + "b" * 64, size_bytes=42, sha256="b" * 64)
BASE = BaseModelRef(name="minilm-classifier", sha256="d" * 64)


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RegistryStore]:
    if request.param == "memory":
        yield FakeRegistryStore()
        return
    dsn = load_settings(FedbusSettings).postgres_dsn.get_secret_value()
    if not dsn:
        pytest.fail("FEDBUS_POSTGRES_DSN is empty: start the local stack with `make up`")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=8)
    try:
        yield await PostgresRegistryStore.create(pool)
    finally:
        await pool.close()


def version_of(tenant: str, name: str = "cnn-mnist", job_id: str | None = None) -> NewVersion:
    return NewVersion(
        tenant=tenant,
        name=name,
        job_id=job_id or f"job-{uuid.uuid4().hex[:8]}",
        status=JobStatus.BUDGET_EXHAUSTED,
        rounds=3,
        metrics={"accuracy": 0.9},
        artifact=REF,
        strategy=StrategySpec(name=Strategy.FEDADAM, options={"eta": 0.1}),
        privacy_mode=PrivacyMode.CENTRAL_DP,
        guarantee=PrivacyGuarantee(
            mode=PrivacyMode.CENTRAL_DP,
            epsilon=1.5,
            delta=1e-5,
            accountant="rdp",
            noise_multiplier=2.0,
            clipping_norm=0.1,
            rounds=4,
        ),
        participants=("c1", "c2"),
        round_metrics=((1, {"accuracy": 0.5}), (2, {"accuracy": 0.7}), (3, {"accuracy": 0.9})),
    )


async def test_versions_count_from_one_with_the_previous_as_parent(
    store: RegistryStore, tenant: str
) -> None:
    first, created_first = await store.register(version_of(tenant))
    second, created_second = await store.register(version_of(tenant))

    assert (first.version, first.parent_version, created_first) == (1, None, True)
    assert (second.version, second.parent_version, created_second) == (2, 1, True)
    assert second.created_at >= first.created_at


async def test_a_version_reads_back_as_it_was_registered(store: RegistryStore, tenant: str) -> None:
    new = version_of(tenant)
    lora = replace(version_of(tenant, name="minilm-text"), base_model=BASE)
    await store.register(new)
    await store.register(lora)

    found = await store.version(tenant, "cnn-mnist", 1)
    found_lora = await store.version(tenant, "minilm-text", 1)

    assert found is not None
    assert found.spec == new
    assert found_lora is not None
    assert found_lora.spec == lora
    assert await store.version_for_job(new.job_id) == found


async def test_registering_a_job_twice_returns_the_first_version(
    store: RegistryStore, tenant: str
) -> None:
    new = version_of(tenant)
    first, _ = await store.register(new)

    again, created = await store.register(new)

    assert not created
    assert again == first
    assert [v.version for v in await store.versions(tenant, "cnn-mnist")] == [1]


async def test_concurrent_registrations_never_share_a_number(
    store: RegistryStore, tenant: str
) -> None:
    news = [version_of(tenant) for _ in range(6)]

    results = await asyncio.gather(*(store.register(n) for n in news))

    assert sorted(v.version for v, _ in results) == [1, 2, 3, 4, 5, 6]
    assert all(v.parent_version == (v.version - 1 or None) for v, _ in results)


async def test_concurrent_registrations_of_one_job_make_one_version(
    store: RegistryStore, tenant: str
) -> None:
    new = version_of(tenant)

    results = await asyncio.gather(*(store.register(new) for _ in range(4)))

    assert [created for _, created in results].count(True) == 1
    assert {v.version for v, _ in results} == {1}


async def test_names_and_tenants_number_separately(store: RegistryStore, tenant: str) -> None:
    other = f"{tenant}-other"
    await store.register(version_of(tenant, "cnn-mnist"))
    await store.register(version_of(tenant, "cnn-mnist"))
    await store.register(version_of(tenant, "mlp-iris"))
    await store.register(version_of(other, "cnn-mnist"))

    models = await store.models(tenant)

    assert [(m.name, m.latest_version) for m in models] == [("cnn-mnist", 2), ("mlp-iris", 1)]
    assert [(m.name, m.latest_version) for m in await store.models(other)] == [("cnn-mnist", 1)]


async def test_reads_never_cross_tenants(store: RegistryStore, tenant: str) -> None:
    await store.register(version_of(tenant))

    assert await store.versions(f"{tenant}-other", "cnn-mnist") == []
    assert await store.version(f"{tenant}-other", "cnn-mnist", 1) is None
    assert await store.models(f"{tenant}-other") == []
    assert await store.version(tenant, "cnn-mnist", 2) is None


async def test_jobs_rounds_and_completions_are_remembered(
    store: RegistryStore, tenant: str, make_job: MakeJob
) -> None:
    job = make_job()
    await store.save_job(JobInfo(job.job_id, tenant, job.spec))
    await store.save_job(JobInfo(job.job_id, "someone-else", job.spec))  # redelivery: first wins
    await store.save_round(job.job_id, RoundRecord(2, ("c2",), {"loss": 0.5}, REF, BASE))
    await store.save_round(job.job_id, RoundRecord(1, ("c1",), {"loss": 0.9}, REF))
    await store.save_round(job.job_id, RoundRecord(1, ("c1", "c3"), {"loss": 0.8}, REF))
    done = job.completed(REF, accuracy=0.7)
    await store.save_completion(done)

    assert await store.job(job.job_id) == JobInfo(job.job_id, tenant, job.spec)
    assert await store.rounds(job.job_id) == [
        RoundRecord(1, ("c1", "c3"), {"loss": 0.8}, REF),
        RoundRecord(2, ("c2",), {"loss": 0.5}, REF, BASE),
    ]
    assert await store.completion(job.job_id) == done
    assert await store.job("no-such-job") is None
    assert await store.completion("no-such-job") is None


async def test_the_ledger_keeps_the_first_figures_of_each_round(store: RegistryStore) -> None:
    job_id = f"job-{uuid.uuid4().hex[:8]}"
    await store.save_ledger(job_id, LedgerEntry(2, 7.96, 1e-5, exhausted=True))
    await store.save_ledger(job_id, LedgerEntry(1, 3.1, 1e-5, exhausted=False))
    await store.save_ledger(job_id, LedgerEntry(2, 0.01, 1e-5, exhausted=False))

    assert await store.ledger(job_id) == [
        LedgerEntry(1, 3.1, 1e-5, exhausted=False),
        LedgerEntry(2, 7.96, 1e-5, exhausted=True),
    ]
    assert await store.ledger(f"job-{uuid.uuid4().hex[:8]}") == []


async def test_a_refused_job_is_never_registered(store: RegistryStore, tenant: str) -> None:
    new = version_of(tenant)

    assert await store.refuse(new.job_id, "the ledger says 7.96") is True
    assert await store.refuse(new.job_id, "again") is False
    assert await store.refusal(new.job_id) == "the ledger says 7.96"
    with pytest.raises(NonRetryableError, match=r"the ledger says 7\.96"):
        await store.register(new)
    assert await store.version_for_job(new.job_id) is None


async def test_a_registered_job_cannot_be_refused(store: RegistryStore, tenant: str) -> None:
    new = version_of(tenant)
    await store.register(new)

    assert await store.refuse(new.job_id, "too late") is False
    assert await store.refusal(new.job_id) is None


async def test_concurrent_refusal_and_registration_leave_one_outcome(
    store: RegistryStore, tenant: str
) -> None:
    for _ in range(5):
        new = version_of(tenant)
        outcomes = await asyncio.gather(
            store.register(new), store.refuse(new.job_id, "no"), return_exceptions=True
        )
        registered = await store.version_for_job(new.job_id) is not None
        refused = await store.refusal(new.job_id) is not None
        assert registered != refused, outcomes


async def test_overdue_lists_ends_neither_registered_nor_refused(
    store: RegistryStore, make_job: MakeJob
) -> None:
    waiting, refused, registered = make_job(), make_job(), make_job()
    for job in (waiting, refused, registered):
        await store.save_completion(job.completed(REF))
    await store.refuse(refused.job_id, "no ledger")
    await store.register(version_of(registered.tenant, job_id=registered.job_id))
    cutoff = utc_now() + timedelta(seconds=1)

    overdue = {e.job_id for e in await store.overdue(cutoff)}
    assert waiting.job_id in overdue
    assert not overdue & {refused.job_id, registered.job_id}
    assert waiting.job_id not in {
        e.job_id for e in await store.overdue(cutoff - timedelta(hours=1))
    }
