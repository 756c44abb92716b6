"""Shared fixtures: a tiny real dataset (scikit-learn digits) prepared once per session."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fedbus.events import PrivacySpec, RoundStarted, StrategySpec, TrainingConfig
from fedbus_executor import PrepareOptions, prepare_dataset


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``digits/`` with a manifest and 4 IID client files of about 360 examples each."""
    out = tmp_path_factory.mktemp("data")
    return prepare_dataset("digits", out, PrepareOptions(num_clients=4, seed=0)).root


@pytest.fixture
def client_file(digits_root: Path) -> Path:
    return digits_root / "clients" / "client-000.parquet"


RoundFactory = Callable[..., RoundStarted]


@pytest.fixture
def round_started() -> RoundFactory:
    """Build a round.started for ``c1`` on ``digits``, round 1, no global model (overridable)."""
    return make_round


def make_round(**overrides: Any) -> RoundStarted:
    """A round.started for client ``c1`` on dataset ``digits``, round 1, no global model."""
    fields: dict[str, Any] = {
        "source": "orchestration",
        "job_id": "job-1",
        "round": 1,
        "selected_clients": ["c1"],
        "min_clients": 1,
        "deadline": datetime.now(UTC) + timedelta(minutes=5),
        "global_model": None,
        "model": "mlp",
        "dataset": "digits",
        "training": TrainingConfig(local_epochs=1, batch_size=32, learning_rate=0.05),
        "strategy": StrategySpec(),
        "privacy": PrivacySpec(),
        "seed": 42,
    }
    fields.update(overrides)
    return RoundStarted.create(**fields)
