"""The dataset cache: one read per unchanged file, a fresh read when the file changes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from fedbus_executor import (
    DataRef,
    DatasetCache,
    DatasetError,
    DatasetSpec,
    ModelRef,
    TrainingExecutor,
    TrainingTask,
    load_dataset,
    write_parquet,
)
from fedbus_executor import cache as cache_module

SPEC = DatasetSpec(name="toy", feature_shape=(1, 2, 2), classes=("a", "b"))


def _write(path: Path, rows: int, value: float = 0.5) -> Path:
    features = np.full((rows, 1, 2, 2), value, dtype=np.float32)
    write_parquet(path, SPEC, labels=np.arange(rows, dtype=np.int64) % 2, features=features)
    return path


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file the cache actually reads."""
    seen: list[Path] = []
    real = load_dataset

    def counting(path: str | Path, spec: DatasetSpec) -> object:
        seen.append(Path(path))
        return real(path, spec)

    monkeypatch.setattr(cache_module, "load_dataset", counting)
    return seen


def test_an_unchanged_file_is_read_once(tmp_path: Path, reads: list[Path]) -> None:
    path = _write(tmp_path / "d.parquet", 4)
    cache = DatasetCache()

    first = cache.load(path, SPEC)
    second = cache.load(str(path), SPEC)

    assert second is first
    assert reads == [path]
    assert len(cache) == 1


def test_a_changed_file_is_read_and_validated_again(tmp_path: Path, reads: list[Path]) -> None:
    path = _write(tmp_path / "d.parquet", 4)
    cache = DatasetCache()
    cache.load(path, SPEC)
    stat = path.stat()

    _write(path, 4, value=0.25)  # same size; a later modification time
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    changed = cache.load(path, SPEC)

    assert changed.features is not None
    assert float(changed.features.max()) == 0.25
    assert len(reads) == 2


def test_a_file_broken_since_it_was_cached_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.parquet", 4)
    cache = DatasetCache()
    cache.load(path, SPEC)

    path.write_text("not parquet any more")

    with pytest.raises(DatasetError, match="not a readable Parquet"):
        cache.load(path, SPEC)
    path.unlink()
    with pytest.raises(DatasetError, match="does not exist"):
        cache.load(path, SPEC)


def test_another_spec_is_another_entry(tmp_path: Path, reads: list[Path]) -> None:
    path = _write(tmp_path / "d.parquet", 4)
    cache = DatasetCache()
    other = SPEC.model_copy(update={"classes": ("a", "b", "c")})

    assert cache.load(path, SPEC).spec == SPEC
    assert cache.load(path, other).spec == other
    assert len(reads) == 2


def test_cached_arrays_are_read_only(tmp_path: Path) -> None:
    data = DatasetCache().load(_write(tmp_path / "d.parquet", 4), SPEC)

    assert data.features is not None
    with pytest.raises(ValueError, match="read-only"):
        data.features[0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        data.labels[0] = 1


def test_least_recently_used_goes_first(tmp_path: Path, reads: list[Path]) -> None:
    a, b, c = (_write(tmp_path / f"{n}.parquet", 2) for n in "abc")
    cache = DatasetCache(capacity=2)

    cache.load(a, SPEC)
    cache.load(b, SPEC)
    cache.load(a, SPEC)  # a is now the most recent
    cache.load(c, SPEC)  # drops b
    cache.load(a, SPEC)
    cache.load(b, SPEC)

    assert reads == [a, b, c, b]
    assert len(cache) == 2


def test_threads_share_one_cache(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.parquet", 8)
    cache = DatasetCache()
    lengths: list[int] = []

    workers = [
        threading.Thread(target=lambda: lengths.append(len(cache.load(path, SPEC))))
        for _ in range(8)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()

    assert lengths == [8] * 8
    assert len(cache) == 1


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least one"):
        DatasetCache(capacity=0)


def test_an_executor_with_a_cache_trains_exactly_as_without(
    digits_root: Path, reads: list[Path]
) -> None:
    task = TrainingTask(
        model=ModelRef(name="cnn"),
        data=DataRef(path=str(digits_root / "clients" / "client-000.parquet")),
        batch_size=32,
        seed=5,
        device="cpu",
    )
    cached = TrainingExecutor(datasets=DatasetCache())

    first, second = cached.train(task), cached.train(task)
    plain = TrainingExecutor().train(task)

    assert len(reads) == 1
    assert first.weights_bytes() == second.weights_bytes() == plain.weights_bytes()
    assert first.num_samples == plain.num_samples
