"""The executor-backed model source: the held-out set is read once, at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedbus.errors import NonRetryableError
from fedbus_aggregator.adapters.executor import ExecutorModels
from fedbus_executor import DatasetSpec, PrepareOptions, load_dataset, prepare_dataset
from fedbus_executor import cache as cache_module


@pytest.fixture(scope="module")
def digits_test(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data")
    root = prepare_dataset("digits", out, PrepareOptions(num_clients=2, seed=0)).root
    return root / "test.parquet"


def test_the_held_out_set_is_read_at_start_and_only_then(
    digits_test: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    real = load_dataset  # what the cache calls, until patched below

    def counting(path: str | Path, spec: DatasetSpec) -> object:
        reads.append(str(path))
        return real(path, spec)

    monkeypatch.setattr(cache_module, "load_dataset", counting)

    models = ExecutorModels({"digits": digits_test}, device="cpu")
    assert reads == [str(digits_test)]
    scores = []
    for model in ("mlp", "cnn"):
        weights = models.initial_weights(model=model, dataset="digits", seed=1)
        assert weights is not None
        scores.append(models.evaluate(model=model, dataset="digits", weights=weights))

    assert reads == [str(digits_test)]
    assert scores[0]["eval_samples"] == scores[1]["eval_samples"] > 0
    assert all(0 <= s["accuracy"] <= 1 for s in scores)


def test_a_broken_held_out_file_does_not_stop_the_start(digits_test: Path, tmp_path: Path) -> None:
    broken = tmp_path / "digits" / "test.parquet"
    broken.parent.mkdir()
    manifest = (digits_test.parent / "manifest.json").read_bytes()
    (broken.parent / "manifest.json").write_bytes(manifest)
    broken.write_text("not parquet")

    models = ExecutorModels({"digits": broken}, device="cpu")
    weights = models.initial_weights(model="mlp", dataset="digits", seed=1)

    assert weights is not None
    assert models.evaluate(model="mlp", dataset="digits", weights=weights) == {}


def test_a_model_that_cannot_be_built_for_the_dataset_is_a_non_retryable_error(
    digits_test: Path,
) -> None:
    models = ExecutorModels({"digits": digits_test}, device="cpu")

    with pytest.raises(NonRetryableError, match="'no-such-model' on 'digits'"):
        models.initial_weights(model="no-such-model", dataset="digits", seed=1)
