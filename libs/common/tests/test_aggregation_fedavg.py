"""FedAvg and its streaming accumulator."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedbus.aggregation import (
    ClientUpdate,
    EmptyRoundError,
    FedAvg,
    FedAvgAccumulator,
    IncompatibleUpdateError,
)

FAST = settings(max_examples=30, deadline=None)
finite = st.floats(min_value=-1e3, max_value=1e3, width=32)


def model(value: float = 0.0) -> dict[str, np.ndarray]:
    return {"w": np.full((2, 3), value, dtype=np.float32), "b": np.full(3, value, np.float32)}


def test_weighted_mean_golden_value() -> None:
    updates = [
        ClientUpdate("a", {"w": np.array([1.0, 1.0]), "b": np.array([0.0])}, num_samples=1),
        ClientUpdate("b", {"w": np.array([4.0, 0.0]), "b": np.array([2.0])}, num_samples=3),
    ]
    global_model = {"w": np.array([10.0, 10.0]), "b": np.array([1.0])}

    new = FedAvg().aggregate(global_model=global_model, updates=updates)

    assert new["w"].tolist() == [13.25, 10.25]
    assert new["b"].tolist() == [2.5]


def test_streaming_equals_batch_and_keeps_dtypes() -> None:
    rng = np.random.default_rng(7)
    updates = [
        ClientUpdate(
            f"c{i}",
            {k: rng.standard_normal(v.shape, dtype=np.float32) for k, v in model().items()},
            num_samples=i + 1,
        )
        for i in range(5)
    ]
    accumulator = FedAvg().accumulator()

    for update in updates:
        accumulator.add(update)
    streamed = FedAvg().apply(global_model=model(1.0), delta=accumulator.result())
    batch = FedAvg().aggregate(global_model=model(1.0), updates=updates)

    assert accumulator.total_samples == 15
    for name in batch:
        np.testing.assert_array_equal(streamed[name], batch[name])
        assert batch[name].dtype == np.float32


def test_accumulator_memory_does_not_grow_with_clients() -> None:
    size = 250_000  # 1 MB of float32 per update
    rng = np.random.default_rng(0)

    def updates(count: int) -> Iterator[ClientUpdate]:
        for i in range(count):
            yield ClientUpdate(f"c{i}", {"w": rng.standard_normal(size, dtype=np.float32)}, 1)

    def peak_bytes(count: int) -> int:
        accumulator = FedAvgAccumulator()
        tracemalloc.start()
        for update in updates(count):
            accumulator.add(update)
        accumulator.result()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    few, many = peak_bytes(3), peak_bytes(40)

    assert many < few + size  # 37 more updates cost less than one more model


def test_duplicate_client_and_bad_sample_count_are_rejected() -> None:
    accumulator = FedAvgAccumulator()
    accumulator.add(ClientUpdate("a", model(1.0), 5))

    with pytest.raises(IncompatibleUpdateError):
        accumulator.add(ClientUpdate("a", model(2.0), 5))
    with pytest.raises(IncompatibleUpdateError):
        accumulator.add(ClientUpdate("b", model(2.0), 0))
    with pytest.raises(IncompatibleUpdateError):
        accumulator.add(ClientUpdate("c", {"w": np.zeros((2, 3), np.float32)}, 5))
    assert accumulator.num_updates == 1


def test_empty_round_is_an_error() -> None:
    with pytest.raises(EmptyRoundError):
        FedAvg().aggregate(global_model=model(), updates=[])
    with pytest.raises(EmptyRoundError):
        FedAvgAccumulator().result()


@FAST
@given(
    delta=hnp.arrays(np.float32, (4,), elements=finite),
    counts=st.lists(st.integers(1, 10_000), min_size=1, max_size=8),
)
def test_fedavg_of_equal_updates_is_that_update(delta: np.ndarray, counts: list[int]) -> None:
    updates = [ClientUpdate(f"c{i}", {"w": delta}, n) for i, n in enumerate(counts)]

    combined = FedAvg().combine(updates)

    np.testing.assert_allclose(combined["w"], delta, rtol=1e-5, atol=1e-4)


@FAST
@given(
    deltas=st.lists(hnp.arrays(np.float64, (3,), elements=finite), min_size=1, max_size=6),
    counts=st.lists(st.integers(1, 1000), min_size=6, max_size=6),
    seed=st.integers(0, 2**32 - 1),
)
def test_fedavg_is_invariant_to_client_order(
    deltas: list[np.ndarray], counts: list[int], seed: int
) -> None:
    updates = [ClientUpdate(f"c{i}", {"w": d}, counts[i]) for i, d in enumerate(deltas)]
    shuffled = list(np.random.default_rng(seed).permutation(len(updates)))

    forward = FedAvg().combine(updates)
    permuted = FedAvg().combine([updates[i] for i in shuffled])

    np.testing.assert_array_equal(forward["w"], permuted["w"])  # exact, not merely close


@FAST
@given(
    deltas=st.lists(hnp.arrays(np.float64, (3,), elements=finite), min_size=1, max_size=6),
    count=st.integers(1, 1000),
)
def test_equal_sample_counts_give_the_plain_mean(deltas: list[np.ndarray], count: int) -> None:
    updates = [ClientUpdate(f"c{i}", {"w": d}, count) for i, d in enumerate(deltas)]

    combined = FedAvg().combine(updates)

    np.testing.assert_allclose(combined["w"], np.mean(deltas, axis=0), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_weighted_mean_matches_a_float64_reference_for_each_dtype(
    dtype: type[np.floating[Any]],
) -> None:
    rng = np.random.default_rng(3)
    deltas: list[np.ndarray] = [rng.standard_normal((64, 33)).astype(dtype) for _ in range(20)]
    counts = [int(n) for n in rng.integers(1, 5000, size=20)]
    accumulator = FedAvgAccumulator()

    for i, (delta, n) in enumerate(zip(deltas, counts, strict=True)):
        accumulator.add(ClientUpdate(f"c{i}", {"w": delta}, num_samples=n))
    got = accumulator.result()["w"]

    reference = sum(n * d.astype(np.float64) for d, n in zip(deltas, counts, strict=True))
    assert got.dtype == dtype
    tolerances: dict[type[np.floating[Any]], float] = {
        np.float16: 1e-3,
        np.float32: 1e-6,
        np.float64: 1e-12,
    }
    tolerance = tolerances[dtype]
    np.testing.assert_allclose(got, reference / sum(counts), rtol=0, atol=tolerance * 4)


def test_an_update_of_another_kind_of_number_is_refused() -> None:
    accumulator = FedAvgAccumulator()
    accumulator.add(ClientUpdate("a", {"w": np.ones(3, np.float32)}, num_samples=1))

    with pytest.raises(IncompatibleUpdateError, match="complex"):
        accumulator.add(ClientUpdate("b", {"w": np.ones(3, np.complex64)}, num_samples=1))


# Deltas as training produces them: float32 spanning many magnitudes, where a float sum
# depends on the order of its terms.
spread = st.floats(min_value=-50, max_value=50, width=32).map(
    lambda x: np.float32(x * 10.0 ** (int(abs(x) * 1000) % 9 - 6))
)


@settings(max_examples=60, deadline=None)
@given(
    deltas=st.lists(hnp.arrays(np.float32, (5, 7), elements=spread), min_size=2, max_size=9),
    counts=st.lists(st.integers(1, 60_000), min_size=9, max_size=9),
    order=st.randoms(use_true_random=False),
)
def test_any_arrival_order_gives_the_same_bytes(
    deltas: list[np.ndarray], counts: list[int], order: Any
) -> None:
    updates = [ClientUpdate(f"c{i}", {"w": d, "b": d[0]}, counts[i]) for i, d in enumerate(deltas)]
    arrived = list(updates)
    order.shuffle(arrived)

    def streamed(sequence: list[ClientUpdate]) -> dict[str, bytes]:
        accumulator = FedAvgAccumulator()
        for update in sequence:
            accumulator.add(update)
        return {name: array.tobytes() for name, array in accumulator.result().items()}

    assert streamed(arrived) == streamed(updates)
    reference = sum(n * d.astype(np.float64) for d, n in zip(deltas, counts, strict=False))
    mean = reference / sum(counts[: len(deltas)])
    np.testing.assert_allclose(FedAvg().combine(arrived)["w"], mean, rtol=1e-6, atol=2e-10)


def test_a_plain_float_sum_would_depend_on_the_order() -> None:
    # Why the fixed-point sum: the same three terms added in two orders as float32.
    a, b, c = np.float32(1e5), np.float32(-1e5), np.float32(1e-3)

    assert (a + b) + c != a + (c + b)
    updates = [
        ClientUpdate(k, {"w": np.array([v])}, 1) for k, v in zip("abc", (a, b, c), strict=True)
    ]
    forward = FedAvg().combine(updates)["w"]
    backward = FedAvg().combine(updates[::-1])["w"]
    assert forward.tobytes() == backward.tobytes()
    np.testing.assert_allclose(forward, 1e-3 / 3, rtol=1e-6)


def test_an_update_too_large_or_not_finite_is_refused_and_leaves_the_sum_as_it_was() -> None:
    small = {"w": np.full(200_000, 0.5, np.float32), "b": np.ones(2, np.float32)}
    huge = {"w": np.full(200_000, 0.5, np.float32), "b": np.array([1.0, 3e9], np.float32)}
    broken = {"w": np.full(200_000, 0.5, np.float32), "b": np.array([np.nan, 0.0], np.float32)}
    accumulator = FedAvgAccumulator()
    accumulator.add(ClientUpdate("a", small, 2))

    with pytest.raises(IncompatibleUpdateError, match="too large"):
        accumulator.add(ClientUpdate("b", huge, 1))
    with pytest.raises(IncompatibleUpdateError, match="not finite"):
        accumulator.add(ClientUpdate("c", broken, 1))
    accumulator.add(ClientUpdate("d", small, 2))

    assert accumulator.client_ids == {"a", "d"}
    assert accumulator.result()["w"].tolist()[:2] == [0.5, 0.5]
    assert accumulator.result()["b"].tolist() == [1.0, 1.0]
