"""The int64 fixed-point sum: the same integers as ``rint(weight * value * 2**32)``."""

from __future__ import annotations

import numpy as np
import pytest

from fedbus.aggregation import IncompatibleUpdateError
from fedbus.aggregation.fixed_point import FixedPointSum

ULP = 2.0**-32  # one step of the grid


def exact_sum(terms: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """The reference: each term rounded by ``np.rint`` on its own, summed as integers."""
    total = np.zeros(terms[0][0].size, dtype=object)
    for values, weight in terms:
        rounded = np.rint(weight * values.astype(np.float64).ravel() * 2.0**32)
        total += np.array([int(x) for x in rounded], dtype=object)
    return total


def grid_sum(terms: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """The sum in grid steps, read back exactly (every sum here is below 2**53)."""
    accumulator = FixedPointSum()
    for i, (values, weight) in enumerate(terms):
        accumulator.add({"w": values}, weight=weight, who=f"c{i}")
    return accumulator.mean(divisor=ULP)["w"].ravel()


def test_ties_signs_zeros_and_subnormals_round_as_rint() -> None:
    halves = [0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, -3.5, 1e6 + 0.5, -(1e6 + 0.5)]
    special = [0.0, -0.0, 0.49999999999999994, -0.49999999999999994, 7.0, -7.0]
    values64 = np.array([x * ULP for x in halves + special] + [5e-324, -5e-324])
    values32 = np.array([x * ULP for x in halves] + [1e-45, -1e-45, 1.2e-38], np.float32)

    for values, weight in ((values64, 1), (values32, 1), (values32, 3), (values64, -5)):
        terms = [(values, weight)]
        assert grid_sum(terms).tolist() == exact_sum(terms).tolist()


def test_terms_at_and_past_two_to_the_51_take_the_exact_slow_path() -> None:
    # |weight * value * 2**32| just under, at and over 2**51, with ties on both sides.
    steps = [2.0**51 - 0.5, 2.0**51 - 1.5, 2.0**51, 2.0**51 + 1, 2.0**51 + 2, 2.0**52 + 2]
    values = np.array([s * ULP for s in steps] + [-s * ULP for s in steps] + [0.5 * ULP])
    small = np.array([0.5 * ULP, 2.5 * ULP, -1.5 * ULP] * 4 + [0.0])

    terms = [(values, 1), (small, 7), (values, 1), (-values, 1)]
    assert grid_sum(terms).tolist() == exact_sum(terms).tolist()


def test_a_large_tensor_added_in_slices_gives_the_integers_of_rint_in_any_order() -> None:
    rng = np.random.default_rng(5)
    size = 1_300_007  # several chunks, split across the threads, with a ragged end
    deltas = [rng.standard_normal(size).astype(np.float32) * 1e-3 for _ in range(3)]
    deltas[1][::97] = 2.5 * ULP / 11  # ties after weighting: rint rounds them to even
    weights = [11, 4000, 999_999]

    def added(order: list[int]) -> np.ndarray:
        accumulator = FixedPointSum()
        for i in order:
            accumulator.add({"w": deltas[i]}, weight=weights[i], who=f"c{i}")
        return accumulator.mean(divisor=ULP)["w"]

    forward = added([0, 1, 2])
    assert forward.tobytes() == added([2, 0, 1]).tobytes()
    head = list(zip([d[:2000] for d in deltas], weights, strict=True))
    assert forward[:2000].tolist() == exact_sum(head).tolist()
    tail = list(zip([d[-3000:] for d in deltas], weights, strict=True))
    assert forward[-3000:].tolist() == exact_sum(tail).tolist()


@pytest.mark.parametrize("where", [0, 300_000, 700_000, 1_299_999])
def test_a_refused_large_tensor_leaves_every_slice_as_it_was(where: int) -> None:
    rng = np.random.default_rng(6)
    good = {
        "a": rng.standard_normal(1_300_000).astype(np.float32),
        "z": rng.standard_normal(10).astype(np.float32),
    }
    accumulator = FixedPointSum()
    accumulator.add(good, weight=3, who="first")
    expected = {n: v.tobytes() for n, v in accumulator.mean(divisor=3.0).items()}

    for bad_value, message in ((np.nan, "not finite"), (np.inf, "not finite"), (3e9, "large")):
        for name in ("a", "z"):
            bad = {n: v.copy() for n, v in good.items()}
            bad[name][where % bad[name].size] = bad_value
            with pytest.raises(IncompatibleUpdateError, match=message):
                accumulator.add(bad, weight=2, who="bad")
            got = {n: v.tobytes() for n, v in accumulator.mean(divisor=3.0).items()}
            assert got == expected
