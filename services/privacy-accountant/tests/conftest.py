"""Factories for the accountant's unit tests: one DP job's events, built like the services do."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from fedbus.bus import InMemoryBus
from fedbus.events import (
    BudgetUpdated,
    DpUsage,
    JobAccepted,
    JobMode,
    JobSpec,
    ModelRef,
    PrivacyMode,
    PrivacySpec,
    RoundCompleted,
    UpdateSubmitted,
)

from .fakes import FakeAccountantStore

REF = ModelRef(object_key="jobs/j/round-1/global/" + "a" * 64, size_bytes=10, sha256="a" * 64)
LOCAL = DpUsage(noise_multiplier=1.1, sample_rate=0.05, steps=40, clipping_norm=1.0)
CENTRAL = DpUsage(noise_multiplier=1.5, sample_rate=1.0, steps=1, clipping_norm=0.5)


@dataclass
class Job:
    """One DP job's events."""

    mode: PrivacyMode = PrivacyMode.LOCAL_DP
    target_epsilon: float = 8.0
    delta: float = 1e-5
    dataset: str = "mnist"
    job_id: str = field(default_factory=lambda: f"job-{uuid.uuid4().hex[:8]}")

    def accepted(self) -> JobAccepted:
        privacy = PrivacySpec(
            mode=self.mode, target_epsilon=self.target_epsilon, delta=self.delta, clipping_norm=1.0
        )
        spec = JobSpec(
            mode=JobMode.FEDERATED, model="cnn", dataset=self.dataset, rounds=5, privacy=privacy
        )
        return JobAccepted.create(
            source="orchestration", job_id=self.job_id, tenant="acme",
            request_event_id=str(uuid.uuid4()), spec=spec,
        )  # fmt: skip

    def update(self, round_: int, client: str, dp: DpUsage | None = LOCAL) -> UpdateSubmitted:
        return UpdateSubmitted.create(
            source="trainer", job_id=self.job_id, round=round_, client_id=client, update=REF,
            num_samples=100, dp=dp,
        )  # fmt: skip

    def completed(
        self, round_: int, participants: list[str], dp: DpUsage | None = None
    ) -> RoundCompleted:
        return RoundCompleted.create(
            source="aggregator", job_id=self.job_id, round=round_, global_model=REF,
            participants=participants, total_samples=100 * len(participants), dp=dp,
        )  # fmt: skip


@pytest.fixture
def store() -> FakeAccountantStore:
    return FakeAccountantStore()


@pytest.fixture
def bus() -> InMemoryBus:
    return InMemoryBus()


@pytest.fixture
def make_job() -> type[Job]:
    """``make_job(**overrides)``: a new :class:`Job` (unique id)."""
    return Job


Published = Callable[[Job], list[BudgetUpdated]]
"""``published(job)``: the ``budget.updated`` events of a job, in publication order."""


@pytest.fixture
def published(bus: InMemoryBus) -> Published:
    """``published(job)``: the ``budget.updated`` events of a job, in publication order."""

    def _published(job: Job) -> list[BudgetUpdated]:
        return [e for e in bus.events("budget.updated") if isinstance(e, BudgetUpdated)
                and e.job_id == job.job_id]  # fmt: skip

    return _published
