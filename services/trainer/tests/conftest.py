"""Shared fixtures: a tiny real dataset (scikit-learn digits) prepared once per session."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fedbus.events import PrivacySpec, RoundAssigned, StrategySpec, TrainingConfig
from fedbus.storage import update_key
from fedbus_executor import PrepareOptions, prepare_dataset

from .fakes import get_url, put_url


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``digits/`` with a manifest and 4 IID client files of about 360 examples each."""
    out = tmp_path_factory.mktemp("data")
    return prepare_dataset("digits", out, PrepareOptions(num_clients=4, seed=0)).root


@pytest.fixture
def client_file(digits_root: Path) -> Path:
    return digits_root / "clients" / "client-000.parquet"


RoundFactory = Callable[..., RoundAssigned]


@pytest.fixture
def round_assigned() -> RoundFactory:
    """Build a round.assigned for ``c1`` on ``digits``, round 1, no global model (overridable)."""
    return make_round


def make_round(**overrides: Any) -> RoundAssigned:
    """A round.assigned to client ``c1`` on dataset ``digits``, round 1, no global model.

    Its URLs are :mod:`tests.fakes`' (``memory://get/<key>``, ``memory://put/<key>``) for the
    global model given and the client's update key, unless overridden.
    """
    fields: dict[str, Any] = {
        "source": "aggregator",
        "job_id": "job-1",
        "round": 1,
        "client_id": "c1",
        "started_event_id": str(uuid.uuid4()),
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
    key = update_key(fields["job_id"], fields["round"], fields["client_id"])
    model = fields["global_model"]
    fields.setdefault("global_model_url", get_url(model.object_key) if model else None)
    fields.setdefault("update_key", key)
    fields.setdefault("update_url", put_url(fields["update_key"]))
    fields.setdefault("urls_expire_at", fields["deadline"] + timedelta(minutes=5))
    return RoundAssigned.create(**fields)
