"""Fakes and event factories shared by the aggregator's unit tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest

from fedbus.events import (
    ModelRef,
    PrivacySpec,
    RoundStarted,
    StrategySpec,
    TrainingConfig,
    UpdateSubmitted,
)
from fedbus.storage import InMemoryArtifactStore, tensors_to_bytes, update_key

from .fakes import T0, CountingStore, ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def started() -> Callable[..., RoundStarted]:
    def make(
        job_id: str = "job-1",
        round_: int = 1,
        clients: tuple[str, ...] = ("a", "b", "c"),
        min_clients: int = 2,
        deadline_s: float = 60,
        global_model: ModelRef | None = None,
        strategy: StrategySpec | None = None,
        time: datetime = T0,
        **extra: Any,
    ) -> RoundStarted:
        return RoundStarted.create(
            source="orchestration",
            job_id=job_id,
            time=time,
            round=round_,
            selected_clients=list(clients),
            min_clients=min_clients,
            deadline=time + timedelta(seconds=deadline_s),
            global_model=global_model,
            model="mlp",
            dataset=extra.pop("dataset", "digits"),
            training=extra.pop("training", TrainingConfig()),
            strategy=strategy or StrategySpec(),
            privacy=PrivacySpec(),
            seed=7,
            **extra,
        )

    return make


@pytest.fixture
def submit(
    artifacts: InMemoryArtifactStore,
) -> Callable[..., Any]:
    async def make(
        client: str,
        delta: dict[str, np.ndarray],
        *,
        job_id: str = "job-1",
        round_: int = 1,
        num_samples: int = 10,
        metrics: dict[str, float] | None = None,
    ) -> UpdateSubmitted:
        key = update_key(job_id, round_, client)  # the key its grant lets it write
        ref = await artifacts.put_at(tensors_to_bytes(delta), key=key)
        return UpdateSubmitted.create(
            source="trainer",
            job_id=job_id,
            round=round_,
            client_id=client,
            update=ref,
            num_samples=num_samples,
            metrics=metrics if metrics is not None else {"loss": 1.0, "accuracy": 0.5},
        )

    return make


@pytest.fixture
def artifacts() -> CountingStore:
    """The in-memory store, counting reads (``reads``) for tests that check downloads."""
    return CountingStore()
