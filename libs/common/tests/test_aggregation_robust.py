"""Byzantine-robust strategies: trimmed mean, coordinate-wise median, (Multi-)Krum."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbus.aggregation import (
    ClientUpdate,
    CoordinateMedian,
    IncompatibleUpdateError,
    Krum,
    MultiKrum,
    TrimmedMean,
)

FAST = settings(max_examples=30, deadline=None)


def updates_from(rows: np.ndarray) -> list[ClientUpdate]:
    return [
        ClientUpdate(f"c{i}", {"w": row[:2].reshape(2), "b": row[2:]}, num_samples=1)
        for i, row in enumerate(rows)
    ]


def honest_and_outliers(
    seed: int, honest: int, outliers: int, magnitude: float
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    good = rng.normal(0.0, 1.0, size=(honest, 4))
    bad = rng.choice([-1.0, 1.0], size=(outliers, 4)) * magnitude
    return good, np.concatenate([good, bad])


def test_median_and_trimmed_mean_golden_values() -> None:
    rows = np.array([[1.0, 2, 3, 4], [2, 2, 2, 2], [3, 0, 100, -5], [4, 2, 1, 0], [5, 9, 2, 1]])
    global_model = {"w": np.zeros(2), "b": np.zeros(2)}

    median = CoordinateMedian().aggregate(global_model=global_model, updates=updates_from(rows))
    trimmed = TrimmedMean(trim_fraction=0.2).aggregate(
        global_model=global_model, updates=updates_from(rows)
    )

    assert median["w"].tolist() == [3.0, 2.0]
    assert median["b"].tolist() == [2.0, 1.0]
    assert trimmed["w"].tolist() == [3.0, 2.0]
    assert trimmed["b"].tolist() == pytest.approx([7 / 3, 1.0])


@FAST
@given(
    seed=st.integers(0, 2**31),
    honest=st.integers(5, 12),
    magnitude=st.floats(1e4, 1e12),
)
def test_median_ignores_a_minority_of_huge_outliers(
    seed: int, honest: int, magnitude: float
) -> None:
    good, rows = honest_and_outliers(seed, honest, (honest - 1) // 2, magnitude)

    combined = CoordinateMedian().combine(updates_from(rows))
    value = np.concatenate([combined["w"], combined["b"]])

    assert np.all(value >= good.min(axis=0))
    assert np.all(value <= good.max(axis=0))


@FAST
@given(seed=st.integers(0, 2**31), honest=st.integers(6, 12), magnitude=st.floats(1e4, 1e12))
def test_trimmed_mean_ignores_outliers_within_its_trim(
    seed: int, honest: int, magnitude: float
) -> None:
    outliers = 2
    good, rows = honest_and_outliers(seed, honest, outliers, magnitude)
    fraction = outliers / len(rows) + 1e-9  # trims at least `outliers` at each end

    combined = TrimmedMean(trim_fraction=fraction).combine(updates_from(rows))
    value = np.concatenate([combined["w"], combined["b"]])

    assert np.all(value >= good.min(axis=0))
    assert np.all(value <= good.max(axis=0))


@FAST
@given(seed=st.integers(0, 2**31), honest=st.integers(5, 12), magnitude=st.floats(50.0, 1e9))
def test_krum_never_picks_an_obvious_outlier(seed: int, honest: int, magnitude: float) -> None:
    byzantine = (honest - 3) // 2 + 1
    n = honest + byzantine
    byzantine = min(byzantine, (n - 3) // 2)
    _, rows = honest_and_outliers(seed, honest, byzantine, magnitude)
    strategy = Krum(num_byzantine=byzantine)

    strategy.combine(updates_from(rows))

    assert strategy.last_selected[0] in {f"c{i}" for i in range(honest)}


def test_multi_krum_averages_the_selected_updates() -> None:
    rows = np.array([[0.0] * 4, [1.0] * 4, [2.0] * 4, [1.5] * 4, [100.0] * 4])
    strategy = MultiKrum(num_byzantine=1, num_selected=3)

    combined = strategy.combine(updates_from(rows))

    assert set(strategy.last_selected) == {"c1", "c2", "c3"}
    assert combined["w"].tolist() == [1.5, 1.5]


def test_krum_requires_enough_clients() -> None:
    rows = np.zeros((4, 4))

    with pytest.raises(IncompatibleUpdateError):
        Krum(num_byzantine=1).combine(updates_from(rows))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), order=st.permutations(range(7)))
def test_robust_strategies_give_the_same_bytes_in_any_arrival_order(
    seed: int, order: list[int]
) -> None:
    rows = np.random.default_rng(seed).standard_normal((7, 40)).astype(np.float32)
    round_ = updates_from(rows)
    arrived = [round_[i] for i in order]

    for make in (
        lambda: MultiKrum(num_byzantine=2, num_selected=3),
        lambda: TrimmedMean(trim_fraction=0.2),
        CoordinateMedian,
    ):
        forward, permuted = make().combine(round_), make().combine(arrived)
        assert {k: v.tobytes() for k, v in forward.items()} == {
            k: v.tobytes() for k, v in permuted.items()
        }
