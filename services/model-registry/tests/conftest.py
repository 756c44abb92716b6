"""Factories for the registry's unit tests: events of one job, built like the services do."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypedDict, Unpack

import numpy as np
import pytest

from fedbus.bus import Handler, InMemoryBus
from fedbus.events import (
    BudgetStatus,
    BudgetUpdated,
    Event,
    JobAccepted,
    JobCompleted,
    JobMode,
    JobSpec,
    JobStatus,
    ModelRef,
    PrivacyBudget,
    PrivacyGuarantee,
    PrivacyMode,
    PrivacySpec,
    RoundCompleted,
    Strategy,
    StrategySpec,
)
from fedbus.storage import InMemoryArtifactStore
from fedbus_registry.deps import Deps
from fedbus_registry.handlers import HANDLERS

from .fakes import FakeRegistryStore


@dataclass
class Job:
    """One job's events, with its tenant and spec."""

    tenant: str
    model: str = "cnn"
    dataset: str = "mnist"
    privacy: PrivacyMode = PrivacyMode.NONE
    job_id: str = field(default_factory=lambda: f"job-{uuid.uuid4().hex[:8]}")

    @property
    def spec(self) -> JobSpec:
        privacy = PrivacySpec(mode=self.privacy, target_epsilon=3.0, delta=1e-5, clipping_norm=1.0)
        return JobSpec(
            mode=JobMode.FEDERATED,
            model=self.model,
            dataset=self.dataset,
            rounds=2,
            clients_per_round=2,
            strategy=StrategySpec(name=Strategy.FEDPROX, options={"proximal_mu": 0.01}),
            privacy=privacy if self.privacy is not PrivacyMode.NONE else PrivacySpec(),
        )

    def accepted(self) -> JobAccepted:
        return JobAccepted.create(
            source="orchestration",
            job_id=self.job_id,
            tenant=self.tenant,
            request_event_id=str(uuid.uuid4()),
            spec=self.spec,
        )

    def round(
        self, number: int, participants: list[str], model: ModelRef, **metrics: float
    ) -> RoundCompleted:
        return RoundCompleted.create(
            source="aggregator",
            job_id=self.job_id,
            round=number,
            global_model=model,
            participants=participants,
            total_samples=100 * len(participants),
            metrics=metrics or {"accuracy": 0.5 + number / 10, "loss": 1.0 / number},
        )

    def budget(
        self, number: int, epsilon: float, *, delta: float = 1e-5, exhausted: bool = False
    ) -> BudgetUpdated:
        """The accountant's ``budget.updated`` after round ``number``: ``epsilon`` spent."""
        return BudgetUpdated.create(
            source="privacy-accountant",
            job_id=self.job_id,
            round=number,
            budget=PrivacyBudget(epsilon=3.0, delta=1e-5),
            total=BudgetStatus(
                epsilon_spent=epsilon, epsilon_remaining=max(0.0, 3.0 - epsilon), delta=delta
            ),
            exhausted=exhausted,
        )

    def guarantee(
        self, epsilon: float, *, rounds: int = 2, delta: float = 1e-5
    ) -> PrivacyGuarantee:
        """The guarantee orchestration puts in ``job.completed`` after ``rounds`` rounds."""
        return PrivacyGuarantee(
            mode=self.privacy, epsilon=epsilon, delta=delta, accountant="rdp",
            noise_multiplier=1.1, clipping_norm=1.0, rounds=rounds,
        )  # fmt: skip

    def completed(
        self,
        final: ModelRef | None,
        *,
        rounds: int = 2,
        status: JobStatus = JobStatus.COMPLETED,
        guarantee: PrivacyGuarantee | None = None,
        **metrics: float,
    ) -> JobCompleted:
        return JobCompleted.create(
            source="orchestration",
            job_id=self.job_id,
            status=status,
            rounds_completed=rounds,
            final_model=final,
            metrics=metrics,
            guarantee=guarantee,
        )


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def artifacts() -> InMemoryArtifactStore:
    return InMemoryArtifactStore()


async def upload_model(artifacts: InMemoryArtifactStore, job_id: str, round_: int) -> ModelRef:
    """A small safetensors global model for ``round_`` of ``job_id``."""
    weights = {"w": np.full((3, 2), float(round_), dtype=np.float32)}
    return await artifacts.put_tensors(weights, prefix=f"jobs/{job_id}/round-{round_}/global")


Upload = Callable[[str, int], Awaitable[ModelRef]]
"""``upload(job_id, round_)``: store a global model, return its reference."""


class JobOverrides(TypedDict, total=False):
    """The :class:`Job` fields a test may set."""

    tenant: str
    model: str
    dataset: str
    privacy: PrivacyMode
    job_id: str


class MakeJob(Protocol):
    """``make_job(**overrides)``: a :class:`Job` in the test's tenant unless told otherwise."""

    def __call__(self, **overrides: Unpack[JobOverrides]) -> Job: ...


@pytest.fixture
def upload(artifacts: InMemoryArtifactStore) -> Upload:
    async def _upload(job_id: str, round_: int) -> ModelRef:
        return await upload_model(artifacts, job_id, round_)

    return _upload


@pytest.fixture
def make_job(tenant: str) -> MakeJob:
    """``make_job(**overrides)``: a :class:`Job` in the test's tenant unless told otherwise."""

    def _make(**overrides: Unpack[JobOverrides]) -> Job:
        fields: JobOverrides = {"tenant": tenant, **overrides}
        return Job(**fields)

    return _make


Handlers = dict[type[Event], Handler]
"""The registry's routing table bound to test dependencies."""


@pytest.fixture
def store() -> FakeRegistryStore:
    return FakeRegistryStore()


@pytest.fixture
def bus() -> InMemoryBus:
    return InMemoryBus()


@pytest.fixture
def deps(store: FakeRegistryStore, artifacts: InMemoryArtifactStore, bus: InMemoryBus) -> Deps:
    return Deps(store=store, artifacts=artifacts, dead_letters=bus)


@pytest.fixture
def handlers(deps: Deps) -> Handlers:
    return HANDLERS.bind(deps)
