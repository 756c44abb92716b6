"""``import_dataset``: a user's CSV/Parquet into the folder trainers read, or an error that
names the row and the column and leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fedbus.datalayout import client_file
from fedbus_executor import DataRef, ModelRef, TrainingExecutor, TrainingTask, load_dataset
from fedbus_executor.importer import DataImportError, ImportOptions, import_dataset


def _patients(path: Path, n: int = 120, *, rows: dict[int, str] | None = None) -> Path:
    """A CSV: id, site, three numbers, a 0/1 outcome, a free-text note (row 1 is line 2)."""
    rng = np.random.default_rng(7)
    lines = ["patient_id,site,age,bmi,glucose,outcome,notes"]
    for i in range(1, n + 1):
        site = ("north", "south", "east")[i % 3]
        age, bmi, glucose = rng.integers(20, 90), rng.normal(25, 4), rng.normal(100, 20)
        outcome = int(glucose > 100)
        lines.append(f"P{i:04d},{site},{age},{bmi:.2f},{glucose:.1f},{outcome},visit {i}")
    for row, text in (rows or {}).items():
        lines[row] = text
    path.write_text("\n".join(lines) + "\n")
    return path


def _error(tmp_path: Path, source: Path, **options: object) -> DataImportError:
    out = tmp_path / "out"
    with pytest.raises(DataImportError) as err:
        import_dataset(source, out, ImportOptions(**options))  # type: ignore[arg-type]
    assert not out.exists() or not any(out.iterdir()), "an import that failed wrote files"
    return err.value


def test_by_site_writes_one_file_per_site_that_the_loader_reads(tmp_path: Path) -> None:
    source = _patients(tmp_path / "patients.csv")
    prepared = import_dataset(
        source, tmp_path / "data", ImportOptions(label="outcome", partition_by="site", seed=3)
    )

    root = tmp_path / "data" / "patients"
    assert prepared.root == root
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["clients"] == ["east", "north", "south"]
    assert manifest["source"]["features"] == ["age", "bmi", "glucose"]
    assert manifest["source"]["ignored_columns"] == ["patient_id", "notes"]
    assert manifest["spec"]["feature_shape"] == [3]
    assert manifest["classes"] == ["0", "1"]
    rows = {rel: entry["rows"] for rel, entry in manifest["files"].items()}
    assert rows["test.parquet"] == 24
    assert rows["train.parquet"] == 96
    spec = DataRef(path=str(client_file(root, "north"))).resolve_spec()
    total = 0
    for site in ("east", "north", "south"):
        data = load_dataset(client_file(root, site), spec)
        assert data.features is not None
        assert data.features.shape[1:] == (3,)
        total += len(data)
    assert total == 96
    # Every training row of "north" came from a "north" row: its ages are that site's.
    csv = [line.split(",") for line in source.read_text().splitlines()[1:]]
    north_ages = {float(r[2]) for r in csv if r[1] == "north"}
    north = load_dataset(client_file(root, "north"), spec)
    assert north.features is not None
    assert set(north.features[:, 0].tolist()) <= north_ages


def test_same_seed_same_files_other_seed_differs(tmp_path: Path) -> None:
    source = _patients(tmp_path / "p.csv")
    hashes = []
    for seed, out in ((1, "a"), (1, "b"), (2, "c")):
        prepared = import_dataset(
            source, tmp_path / out, ImportOptions(label="outcome", num_clients=3, seed=seed)
        )
        files = prepared.manifest["files"]
        assert isinstance(files, dict)
        hashes.append({k: v["sha256"] for k, v in files.items()})
    assert hashes[0] == hashes[1]
    assert hashes[0] != hashes[2]
    assert sorted(hashes[0]) == [
        "clients/client-000.parquet",
        "clients/client-001.parquet",
        "clients/client-002.parquet",
        "test.parquet",
        "train.parquet",
    ]


def test_dirichlet_clients_and_custom_names(tmp_path: Path) -> None:
    prepared = import_dataset(
        _patients(tmp_path / "p.csv", 300),
        tmp_path,
        ImportOptions(
            label="outcome",
            features=("glucose", "age"),
            num_clients=2,
            dirichlet_alpha=0.1,
            client_names="fedbus-trainer-cpu-{i}",
            name="skewed",
        ),
    )
    assert prepared.manifest["clients"] == ["fedbus-trainer-cpu-0", "fedbus-trainer-cpu-1"]
    assert prepared.manifest["partition"] == "dirichlet"
    assert (tmp_path / "skewed" / "clients" / "fedbus-trainer-cpu-1.parquet").is_file()
    assert sum(map(sum, prepared.client_histograms)) == 240


def test_parquet_image_pixels_with_class_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 40
    columns: dict[str, np.ndarray] = {
        f"px{i}": rng.random(n).astype(np.float32) for i in range(2 * 3 * 3)
    }
    columns["writer"] = np.array([f"w{i % 4}" for i in range(n)])
    columns["digit"] = rng.integers(0, 3, n)
    source = tmp_path / "glyphs.parquet"
    pq.write_table(pa.table(columns), source)

    prepared = import_dataset(
        source,
        tmp_path / "data",
        ImportOptions(
            label="digit",
            image_shape=(2, 3, 3),
            classes=("zero", "one", "two"),
            partition_by="writer",
            test_fraction=0.25,
        ),
    )
    assert prepared.spec.feature_shape == (2, 3, 3)
    assert prepared.spec.classes == ("zero", "one", "two")
    data = load_dataset(client_file(prepared.root, "w1"), prepared.spec)
    assert data.features is not None
    assert data.features.shape[1:] == (2, 3, 3)


@pytest.mark.parametrize(
    ("rows", "options", "row", "column", "words"),
    [
        ({5: "P0005,north,40,22.0,90.0,,x"}, {}, 5, "outcome", "label is missing"),
        ({3: "P0003,north,40,22.0,90.0,1.5,x"}, {}, 3, "outcome", "1.5 is not an integer"),
        ({8: "P0008,north,40,22.0,90.0,-1,x"}, {}, 8, "outcome", "label -1 is negative"),
        ({2: "P0002,north,40,22.0,90.0,sick,x"}, {}, 2, "outcome", "'sick' is not a number"),
        ({9: "P0009,north,40,22.0,90.0,2,x"}, {"classes": ("no", "yes")}, 9, "outcome",
         "label 2 is outside 0 .. 1"),
        ({7: "P0007,north,NaN,22.0,90.0,1,x"}, {}, 7, "age", "missing"),
        ({6: "P0006,north,40,,90.0,1,x"}, {}, 6, "bmi", "missing"),
        ({4: "P0004,north,40,inf,90.0,1,x"}, {}, 4, "bmi", "value is inf"),
        ({4: "P0004,north,40,1e39,90.0,1,x"}, {}, 4, "bmi", "does not fit in float32"),
        ({11: "P0011,north,forty,22.0,90.0,1,x"}, {}, 11, "age", "'forty' is not a number"),
        ({10: "P0010,,40,22.0,90.0,1,x"}, {"partition_by": "site"}, 10, "site",
         "value is missing"),
        ({12: "P0012,north,40,22.0,90.0,1,x,extra"}, {}, 12, None, "has 8 cells"),
    ],
)  # fmt: skip
def test_a_bad_value_names_its_row_and_column(
    tmp_path: Path,
    rows: dict[int, str],
    options: dict[str, object],
    row: int,
    column: str | None,
    words: str,
) -> None:
    err = _error(tmp_path, _patients(tmp_path / "bad.csv", rows=rows), label="outcome", **options)
    assert err.row == row
    assert err.column == column
    assert words in str(err)
    assert str(err).startswith(f"{tmp_path / 'bad.csv'}")


@pytest.mark.parametrize(
    ("options", "column", "words"),
    [
        ({"label": "diagnosis"}, "diagnosis", "column is missing (the file has: patient_id"),
        ({"label": "outcome", "features": ("age", "notes")}, "notes", "'visit 1' is not a number"),
        ({"label": "outcome", "image_shape": (1, 2, 2)}, None,
         "1x2x2 needs 4 pixel columns, found 3"),
        ({"label": "outcome", "partition_by": "site", "test_fraction": 1.5}, None,
         "test fraction must be in (0, 1)"),
        ({"label": "outcome", "num_clients": 2, "client_names": "site"}, None, "has no {i}"),
        ({"label": "outcome", "client_names": "bad name {i}"}, None, "client id 'bad name 0'"),
    ],
)  # fmt: skip
def test_bad_options_are_refused_before_writing(
    tmp_path: Path, options: dict[str, object], column: str | None, words: str
) -> None:
    err = _error(tmp_path, _patients(tmp_path / "p.csv"), **options)
    assert err.column == column
    assert words in str(err)


def test_a_partition_column_needs_two_values(tmp_path: Path) -> None:
    source = tmp_path / "one-site.csv"
    source.write_text("site,x,y\n" + "".join(f"only,{i},{i % 2}\n" for i in range(10)))
    err = _error(tmp_path, source, label="y", partition_by="site")
    assert err.column == "site"
    assert "1 distinct value (only); partitioning by it needs at least 2" in str(err)


def test_an_existing_dataset_is_kept_unless_replaced(tmp_path: Path) -> None:
    source = _patients(tmp_path / "p.csv")
    first = import_dataset(source, tmp_path / "d", ImportOptions(label="outcome", seed=1))
    before = (first.root / "manifest.json").read_text()
    with pytest.raises(DataImportError, match="already exists"):
        import_dataset(source, tmp_path / "d", ImportOptions(label="outcome", seed=2))
    assert (first.root / "manifest.json").read_text() == before
    import_dataset(source, tmp_path / "d", ImportOptions(label="outcome", seed=2), replace=True)
    assert json.loads((first.root / "manifest.json").read_text())["seed"] == 2
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["p"]  # no staging left


def test_an_imported_client_file_trains_one_epoch_of_the_mlp(tmp_path: Path) -> None:
    prepared = import_dataset(
        _patients(tmp_path / "patients.csv", 240),
        tmp_path / "data",
        ImportOptions(label="outcome", partition_by="site"),
    )
    task = TrainingTask(
        model=ModelRef(name="mlp", kwargs={"hidden": [8]}),
        data=DataRef(path=str(client_file(prepared.root, "north"))),
        epochs=1,
        batch_size=16,
        learning_rate=0.01,
        seed=0,
        device="cpu",
    )
    result = TrainingExecutor().train(task)
    north = len(load_dataset(client_file(prepared.root, "north"), prepared.spec))
    assert result.num_samples == north > 0
    assert result.metrics.epochs == 1
    assert np.isfinite(result.metrics.loss)
    assert result.weights_bytes()
