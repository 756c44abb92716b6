"""Fixtures shared by the orchestration unit tests: a fake store, a clock, event factories."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from fedbus.events import (
    DatasetInfo,
    JobMode,
    JobRequested,
    JobSpec,
    ModelCapability,
    ModelRef,
    RoundCompleted,
    TrainerHeartbeat,
    TrainerStatus,
)

from .fakes import FakeClock, FakeJobStore

MODELS = ("cnn", "mlp")
CLOSED = '{"additionalProperties": false, "properties": {}, "type": "object"}'
"""The options schema of a model that takes none."""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2025, 3, 14, 9, 0, tzinfo=UTC))


@pytest.fixture
def store() -> FakeJobStore:
    return FakeJobStore()


def _spec(**overrides: Any) -> JobSpec:
    fields: dict[str, Any] = {
        "mode": JobMode.FEDERATED, "model": "cnn", "dataset": "digits", "rounds": 3,
        "clients_per_round": 2, "min_clients": 2, "round_deadline_seconds": 60, "seed": 7,
    }  # fmt: skip
    fields.update(overrides)
    return JobSpec(**fields)


@pytest.fixture
def make_spec() -> Callable[..., JobSpec]:
    return _spec


@pytest.fixture
def make_request() -> Callable[..., JobRequested]:
    def make(job_id: str | None = None, tenant: str = "acme", key: str | None = None,
             **spec: Any) -> JobRequested:  # fmt: skip
        return JobRequested.create(
            source="test", job_id=job_id or f"job-{uuid.uuid4().hex[:8]}", tenant=tenant,
            idempotency_key=key, spec=_spec(**spec),
        )  # fmt: skip

    return make


@pytest.fixture
def make_heartbeat(clock: FakeClock) -> Callable[..., TrainerHeartbeat]:
    """A trainer's heartbeat: it holds ``dataset`` and can build cnn and mlp for it."""

    def make(client_id: str, dataset: str = "digits", *, interval: int = 2,
             status: TrainerStatus = TrainerStatus.IDLE,
             time: datetime | None = None) -> TrainerHeartbeat:  # fmt: skip
        return TrainerHeartbeat.create(
            source="trainer", job_id="", time=time or clock(), client_id=client_id,
            device="cpu", status=status, capacity=1, interval_seconds=interval,
            datasets=[DatasetInfo(name=dataset, num_samples=100, feature_shape=[1, 8, 8],
                                  classes=[str(i) for i in range(10)], models=list(MODELS))],
            models=[ModelCapability(name=m, package="fedbus-executor", version="0.1.0",
                                    options_schema=CLOSED) for m in MODELS],
        )  # fmt: skip

    return make


def model_ref(tag: str) -> ModelRef:
    return ModelRef(
        object_key=f"jobs/x/{tag}", size_bytes=10, sha256=f"{abs(hash(tag)):064x}"[-64:]
    )


@pytest.fixture
def make_ref() -> Callable[[str], ModelRef]:
    return model_ref


@pytest.fixture
def make_completed() -> Callable[..., RoundCompleted]:
    def make(job_id: str, rnd: int, *, loss: float = 1.0, tag: str | None = None) -> RoundCompleted:
        return RoundCompleted.create(
            source="aggregator", job_id=job_id, round=rnd,
            global_model=model_ref(tag or f"{job_id}-{rnd}"), participants=["a", "b"],
            total_samples=200, metrics={"loss": loss, "accuracy": 0.5},
        )  # fmt: skip

    return make
