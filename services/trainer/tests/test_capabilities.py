"""What a trainer announces: its installed models, and per dataset which fit and why not."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fedbus_executor import DatasetSpec
from fedbus_trainer import Activity, heartbeat_event
from fedbus_trainer.capabilities import announced_datasets, announced_models
from fedbus_trainer.datasets import LocalDataset


def _dataset(tmp_path: Path, name: str, shape: tuple[int, ...], classes: int) -> LocalDataset:
    root = tmp_path / name
    (root / "clients").mkdir(parents=True)
    spec = DatasetSpec(name=name, feature_shape=shape, classes=tuple(map(str, range(classes))))
    (root / "manifest.json").write_text(json.dumps(spec.model_dump(mode="json")))
    return LocalDataset(name=name, path=root / "clients" / "t1.parquet", spec=spec,
                        num_samples=40)  # fmt: skip


def test_models_are_the_installed_plugins_with_their_options_schema() -> None:
    models = {m.name: m for m in announced_models()}
    assert {"cnn", "mlp", "cnn-batchnorm", "minilm-classifier"} <= set(models)
    assert models["cnn"].package == "fedbus-executor"
    schema = json.loads(models["tabular-mlp"].options_schema)
    assert "hidden" in schema["properties"]


def test_each_dataset_lists_what_fits_and_quotes_why_the_rest_does_not(tmp_path: Path) -> None:
    models = announced_models()
    image = _dataset(tmp_path, "digits", (1, 8, 8), 10)
    table = _dataset(tmp_path, "table", (8,), 2)
    img, tab = announced_datasets([image, table], models)

    assert img.feature_shape == [1, 8, 8]
    assert img.classes == [str(i) for i in range(10)]
    assert {"cnn", "mlp"} <= set(img.models)
    assert tab.feature_shape == [8]
    assert tab.num_samples == 40
    assert "mlp" in tab.models
    assert "cnn" not in tab.models
    problems = {p.model: p.problem for p in tab.problems}
    assert problems["cnn"] == "cnn needs (C, H, W) features, dataset has (8,)"
    assert set(tab.models) | set(problems) == {m.name for m in models}
    digest = hashlib.sha256((tmp_path / "table" / "manifest.json").read_bytes()).hexdigest()
    assert tab.manifest_sha256 == digest


def test_the_heartbeat_carries_them(tmp_path: Path) -> None:
    models = announced_models()
    datasets = announced_datasets([_dataset(tmp_path, "table", (8,), 2)], models)
    beat = heartbeat_event(client_id="t1", device="cpu", datasets=datasets,
                           activity=Activity(), interval_seconds=5, models=models)  # fmt: skip
    assert beat.schema_version == 3
    assert [m.name for m in beat.models] == [m.name for m in models]
    targets = {m.name: m.lora_targets for m in beat.models}
    assert targets["minilm-classifier"] == ["query", "key", "value", "dense"]
    assert targets["mlp"] == []
    assert "cnn" in {p.model for p in beat.datasets[0].problems}
