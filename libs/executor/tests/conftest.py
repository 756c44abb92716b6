"""Shared fixtures: small real datasets written to a temporary folder once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedbus_executor import DatasetSpec, PrepareOptions, prepare_dataset, write_parquet


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn digits as Parquet: train, test, 3 clients (Dirichlet)."""
    out = tmp_path_factory.mktemp("data")
    options = PrepareOptions(num_clients=3, partition="dirichlet", alpha=0.5, seed=0)
    return prepare_dataset("digits", out, options).root


@pytest.fixture(scope="session")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DatasetSpec]:
    """A tiny two-class text dataset."""
    spec = DatasetSpec(name="tiny-text", kind="text", classes=("games", "fonts"))
    texts = [f"arcade puzzle game level {i}" for i in range(12)]
    texts += [f"truetype font family glyphs {i}" for i in range(12)]
    labels = [0] * 12 + [1] * 12
    path = tmp_path_factory.mktemp("text") / "train.parquet"
    import numpy as np

    write_parquet(path, spec, labels=np.asarray(labels, np.int64), texts=texts)
    return path, spec
