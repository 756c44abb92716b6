"""One contract for the read-model port, run against the in-memory and PostgreSQL stores."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from fedbus.events import (
    BudgetStatus,
    BudgetUpdated,
    JobAccepted,
    JobCompleted,
    JobFailed,
    JobSpec,
    JobStatus,
    ModelRef,
    PrivacyBudget,
    PrivacyMode,
    PrivacySpec,
    RoundCompleted,
    RoundStarted,
    StrategySpec,
    TrainingConfig,
    utc_now,
)
from fedbus.settings import FedbusSettings, load_settings
from fedbus_gateway import JobStore, JobView, ViewStatus
from fedbus_gateway.adapters import PostgresJobStore
from fedbus_gateway.jobs import new_view

from .fakes import FakeJobStore

SPEC = JobSpec.model_validate(
    {"mode": "federated", "model": "mlp", "dataset": "digits", "rounds": 2, "seed": 7}
)
MODEL = ModelRef(object_key="jobs/j/round-2/global/cd", size_bytes=3, sha256="cd" * 32)


def _id() -> str:
    return f"job-{uuid.uuid4().hex[:12]}"


def _view(tenant: str, *, key: str | None = None, minutes_ago: int = 0) -> JobView:
    at = utc_now() - timedelta(minutes=minutes_ago)
    return new_view(job_id=_id(), tenant=tenant, spec=SPEC, at=at, key=key)


def _started(job_id: str, rnd: int) -> RoundStarted:
    return RoundStarted.create(
        source="t", job_id=job_id, round=rnd, selected_clients=["a", "b"], min_clients=1,
        deadline=utc_now(), model="mlp", dataset="digits", training=TrainingConfig(),
        strategy=StrategySpec(), privacy=PrivacySpec(), seed=7,
    )  # fmt: skip


def _completed_round(job_id: str, rnd: int, acc: float) -> RoundCompleted:
    return RoundCompleted.create(
        source="t", job_id=job_id, round=rnd, global_model=MODEL, participants=["a", "b"][:rnd],
        total_samples=10, metrics={"accuracy": acc},
    )  # fmt: skip


class JobStoreContract:
    """What every :class:`JobStore` does; subclasses provide the ``store`` fixture."""

    tenant: str

    @pytest.fixture(autouse=True)
    def _tenant(self) -> None:
        self.tenant = f"t-{uuid.uuid4().hex[:8]}"

    async def test_claim_then_get_returns_the_view(self, store: JobStore) -> None:
        view = _view(self.tenant)

        stored = await store.claim(view)

        assert stored == view
        assert await store.get(view.job_id) == view
        assert await store.get(_id()) is None

    async def test_claim_with_a_used_key_returns_the_first_job(self, store: JobStore) -> None:
        first = await store.claim(_view(self.tenant, key="k1"))

        again = await store.claim(_view(self.tenant, key="k1"))
        other_tenant = await store.claim(_view(self.tenant + "-b", key="k1"))

        assert again.job_id == first.job_id
        assert other_tenant.job_id != first.job_id

    async def test_forget_removes_the_job(self, store: JobStore) -> None:
        view = await store.claim(_view(self.tenant, key="k2"))

        await store.forget(view.job_id)

        assert await store.get(view.job_id) is None
        assert (await store.claim(_view(self.tenant, key="k2"))).job_id != view.job_id

    async def test_list_is_one_tenants_newest_first_with_filter_and_limit(
        self, store: JobStore
    ) -> None:
        old, mid, new = [await store.claim(_view(self.tenant, minutes_ago=m)) for m in (3, 2, 1)]
        await store.claim(_view(self.tenant + "-other"))
        accept_mid = JobAccepted.create(
            source="t", job_id=mid.job_id, tenant=self.tenant, request_event_id=mid.job_id,
            spec=SPEC,
        )  # fmt: skip
        await store.apply(accept_mid)

        everything = await store.list(self.tenant)
        accepted = await store.list(self.tenant, status=ViewStatus.ACCEPTED)
        two = await store.list(self.tenant, limit=2)

        assert [j.job_id for j in everything] == [new.job_id, mid.job_id, old.job_id]
        assert [j.job_id for j in accepted] == [mid.job_id]
        assert [j.job_id for j in two] == [new.job_id, mid.job_id]

    async def test_events_fold_into_progress_even_out_of_order(self, store: JobStore) -> None:
        view = await store.claim(_view(self.tenant))
        job = view.job_id
        accepted = JobAccepted.create(
            source="t", job_id=job, tenant=self.tenant, request_event_id=job, spec=SPEC
        )

        await store.apply(accepted)
        await store.apply(_started(job, 1))
        running = await store.apply(_completed_round(job, 1, 0.5))
        await store.apply(
            JobCompleted.create(source="t", job_id=job, status=JobStatus.COMPLETED,
                                rounds_completed=2, final_model=MODEL, metrics={"accuracy": 0.8})
        )  # fmt: skip
        await store.apply(_started(job, 2))  # late, from another topic
        await store.apply(_completed_round(job, 2, 0.7))

        assert running is not None
        assert (running.status, running.rounds_completed, running.current_round) == (
            ViewStatus.RUNNING, 1, 1,
        )  # fmt: skip
        done = await store.get(job)
        assert done is not None
        assert (done.status, done.rounds_completed, done.current_round) == (
            ViewStatus.COMPLETED, 2, 2,
        )  # fmt: skip
        assert done.participants == ["a", "b"]
        assert done.final_model == MODEL.model_dump()
        assert done.metrics == {"accuracy": 0.7}

    async def test_failure_is_kept_with_its_reason(self, store: JobStore) -> None:
        view = await store.claim(_view(self.tenant))

        await store.apply(
            JobFailed.create(source="t", job_id=view.job_id, code="too_few_clients",
                             message="round 1: 1 of min 2 clients reported", round=1)
        )  # fmt: skip

        failed = await store.get(view.job_id)
        assert failed is not None
        assert failed.status is ViewStatus.FAILED
        assert [(r.code, r.message) for r in failed.reasons] == [
            ("too_few_clients", "round 1: 1 of min 2 clients reported")
        ]

    async def test_unknown_jobs_start_only_from_events_naming_a_tenant(
        self, store: JobStore
    ) -> None:
        stray, upstream = _id(), _id()

        dropped = await store.apply(_completed_round(stray, 1, 0.1))
        accepted = JobAccepted.create(
            source="t", job_id=upstream, tenant=self.tenant, request_event_id=upstream, spec=SPEC
        )
        created = await store.apply(accepted)

        assert dropped is None
        assert await store.get(stray) is None
        assert created is not None
        assert (created.tenant, created.status, created.spec) == (
            self.tenant, ViewStatus.ACCEPTED, SPEC,
        )  # fmt: skip

    async def test_a_dp_job_shows_its_budget_and_the_latest_spend(self, store: JobStore) -> None:
        view = await store.claim(_view(self.tenant))
        privacy = PrivacySpec(
            mode=PrivacyMode.LOCAL_DP, target_epsilon=4.0, delta=1e-5, clipping_norm=1.0
        )
        dp_spec = SPEC.model_copy(update={"privacy": privacy})
        accepted = JobAccepted.create(source="t", job_id=view.job_id, tenant=self.tenant,
                                      request_event_id=view.job_id, spec=dp_spec)  # fmt: skip

        await store.apply(accepted)
        await store.apply(_budget(view.job_id, 2, {"a": 2.5, "b": 1.9}))
        await store.apply(_budget(view.job_id, 1, {"a": 1.2, "b": 1.0}))  # late, older

        shown = await store.get(view.job_id)
        assert shown is not None
        assert shown.privacy is not None
        assert shown.privacy.model_dump(include={"mode", "budget_epsilon", "delta",
                                                 "epsilon_spent", "clients"}) == {
            "mode": PrivacyMode.LOCAL_DP, "budget_epsilon": 4.0, "delta": 1e-5,
            "epsilon_spent": 2.5, "clients": {"a": 2.5, "b": 1.9},
        }  # fmt: skip

    async def test_a_job_without_dp_shows_no_privacy(self, store: JobStore) -> None:
        view = await store.claim(_view(self.tenant))
        await store.apply(JobAccepted.create(source="t", job_id=view.job_id, tenant=self.tenant,
                                             request_event_id=view.job_id, spec=SPEC))  # fmt: skip

        shown = await store.get(view.job_id)
        assert shown is not None
        assert shown.privacy is None

    async def test_recorded_events_come_back_in_order_after_a_sequence_number(
        self, store: JobStore
    ) -> None:
        job, other = _id(), _id()
        mine = [_started(job, 1), _completed_round(job, 1, 0.5), _started(job, 2)]
        seqs = []
        for event in mine:
            seqs.append(await store.record(event))
            await store.record(_started(other, 1))  # another job's events interleave

        everything = await store.events_after(job, after=0)
        after_first = await store.events_after(job, after=seqs[0])
        one = await store.events_after(job, after=0, limit=1)

        assert seqs == sorted(set(seqs))
        assert [(e.seq, e.event) for e in everything] == list(zip(seqs, mine, strict=True))
        assert [e.event.event_id for e in after_first] == [e.event_id for e in mine[1:]]
        assert [e.seq for e in one] == seqs[:1]
        assert await store.events_after(job, after=seqs[-1]) == []
        assert await store.events_after(_id(), after=0) == []

    async def test_a_redelivered_event_is_kept_once_with_its_first_number(
        self, store: JobStore
    ) -> None:
        job = _id()
        first, second = _started(job, 1), _completed_round(job, 1, 0.5)

        seq = await store.record(first)
        await store.record(second)
        again = await store.record(first)

        assert again == seq
        assert [e.event.event_id for e in await store.events_after(job, after=0)] == [
            first.event_id, second.event_id,
        ]  # fmt: skip


def _budget(job_id: str, rnd: int, clients: dict[str, float]) -> BudgetUpdated:
    def status(spent: float) -> BudgetStatus:
        return BudgetStatus(epsilon_spent=spent, epsilon_remaining=4 - spent, delta=1e-5)

    return BudgetUpdated.create(
        source="privacy-accountant", job_id=job_id, round=rnd,
        budget=PrivacyBudget(epsilon=4.0, delta=1e-5), total=status(max(clients.values())),
        clients={c: status(e) for c, e in clients.items()}, exhausted=False,
    )  # fmt: skip


class TestFakeJobStore(JobStoreContract):
    @pytest.fixture
    def store(self) -> JobStore:
        return FakeJobStore()


@pytest.mark.integration
class TestPostgresJobStore(JobStoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[Any]:
        dsn = load_settings(FedbusSettings).postgres_dsn.get_secret_value()
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            yield await PostgresJobStore.create(pool)
        finally:
            await pool.close()
