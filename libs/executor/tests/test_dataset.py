"""The Parquet loader refuses bad files, naming the file and the column."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fedbus_executor import DatasetError, DatasetSpec, load_dataset, load_spec, write_parquet

SPEC = DatasetSpec(name="toy", feature_shape=(1, 2, 2), classes=("a", "b", "c"))


def _write(
    path: Path,
    features: list[list[float]],
    labels: list[int],
    *,
    feature_type: pa.DataType | None = None,
) -> Path:
    ftype = feature_type or pa.list_(pa.float32())
    table = pa.table({"features": pa.array(features, ftype), "label": pa.array(labels, pa.int64())})
    pq.write_table(table, path)
    return path


def test_valid_file_loads_with_declared_shape(tmp_path: Path) -> None:
    path = tmp_path / "ok.parquet"
    feats = np.arange(8, dtype=np.float32).reshape(2, 1, 2, 2)
    write_parquet(path, SPEC, labels=np.asarray([0, 2]), features=feats)

    data = load_dataset(path, SPEC)

    assert data.features is not None
    assert data.features.shape == (2, 1, 2, 2)
    np.testing.assert_array_equal(data.features, feats)
    assert data.labels.tolist() == [0, 2]


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist") as err:
        load_dataset(tmp_path / "nope.parquet", SPEC)
    assert err.value.path.endswith("nope.parquet")


def test_non_parquet_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_text("label,features\n1,2\n")
    with pytest.raises(DatasetError, match="not a readable Parquet") as err:
        load_dataset(path, SPEC)
    assert err.value.path == str(path)


@pytest.mark.parametrize(
    ("features", "labels", "ftype", "column", "problem"),
    [
        ([[0.0] * 4], [5], None, "label", "outside"),
        ([[0.0] * 4], [-1], None, "label", "outside"),
        ([[0.0] * 3], [0], None, "features", "has 3 values, expected 4"),
        ([[0.0, float("nan"), 0.0, 0.0]], [0], None, "features", "NaN or inf"),
        ([[0.0, float("inf"), 0.0, 0.0]], [0], None, "features", "NaN or inf"),
        ([[0.0] * 4], [0], pa.list_(pa.float64()), "features", "expected float32"),
        ([None], [0], None, "features", "null"),
        ([[0.0, None, 0.0, 0.0]], [0], None, "features", "null values inside"),
        ([[0.0, None, 0.0, 0.0]], [0], pa.list_(pa.float32(), 4), "features", "null values"),
    ],
)
def test_each_failure_names_file_and_column(
    tmp_path: Path,
    features: list[list[float]],
    labels: list[int],
    ftype: pa.DataType | None,
    column: str,
    problem: str,
) -> None:
    path = _write(tmp_path / "f.parquet", features, labels, feature_type=ftype)

    with pytest.raises(DatasetError, match=problem) as err:
        load_dataset(path, SPEC)

    assert err.value.column == column
    assert str(path) in str(err.value)
    assert repr(column) in str(err.value)


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nolabel.parquet"
    pq.write_table(pa.table({"features": pa.array([[0.0] * 4], pa.list_(pa.float32()))}), path)
    with pytest.raises(DatasetError, match="missing") as err:
        load_dataset(path, SPEC)
    assert err.value.column == "label"


def test_wrong_label_type_is_named(tmp_path: Path) -> None:
    path = tmp_path / "strlabel.parquet"
    table = pa.table(
        {"features": pa.array([[0.0] * 4], pa.list_(pa.float32())), "label": pa.array(["a"])}
    )
    pq.write_table(table, path)
    with pytest.raises(DatasetError, match="type is string") as err:
        load_dataset(path, SPEC)
    assert err.value.column == "label"


def test_prepared_manifest_describes_files(digits_root: Path) -> None:
    manifest = json.loads((digits_root / "manifest.json").read_text())
    spec = load_spec(digits_root / "manifest.json")

    assert spec.feature_shape == (1, 8, 8)
    assert manifest["classes"] == [str(i) for i in range(10)]
    rows = {k: v["rows"] for k, v in manifest["files"].items()}
    assert rows["train.parquet"] + rows["test.parquet"] == 1797
    clients = [v for k, v in rows.items() if k.startswith("clients/")]
    assert sum(clients) == rows["train.parquet"]
    for rel, entry in manifest["files"].items():
        import hashlib

        assert hashlib.sha256((digits_root / rel).read_bytes()).hexdigest() == entry["sha256"]
