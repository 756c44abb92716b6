"""Central DP: clipping, DP-FedAvg with fixed clipping (failing closed), adaptive clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedbus.aggregation import (
    ClientUpdate,
    DPFedAvgAdaptiveClipping,
    DPFedAvgFixedClipping,
    FedAvg,
    FedAvgM,
    IncompatibleUpdateError,
    RoundAbortedError,
    adapt_clipping_norm,
    clip_update,
    l2_norm,
    secure_standard_normal,
    update_noise_multiplier,
)

FAST = settings(max_examples=40, deadline=None)
GLOBAL = {"w": np.zeros(3, np.float32), "b": np.zeros(1, np.float32)}


def updates(*scales: float) -> list[ClientUpdate]:
    return [
        ClientUpdate(
            f"c{i}",
            {"w": np.full(3, s, np.float32), "b": np.full(1, s, np.float32)},
            num_samples=10 * (i + 1),
        )
        for i, s in enumerate(scales)
    ]


def dp(noise: float = 0.0, expected: int = 3, seed: int = 0) -> DPFedAvgFixedClipping:
    return DPFedAvgFixedClipping(
        FedAvg(),
        noise_multiplier=noise,
        clipping_norm=1.0,
        expected_clients=expected,
        rng=np.random.default_rng(seed),
    )


@FAST
@given(
    w=hnp.arrays(np.float32, (5,), elements=st.floats(-1e6, 1e6, width=32)),
    b=hnp.arrays(np.float64, (2,), elements=st.floats(-1e6, 1e6)),
    clipping_norm=st.floats(1e-3, 1e3),
)
def test_clipped_update_has_norm_at_most_c(
    w: np.ndarray, b: np.ndarray, clipping_norm: float
) -> None:
    clipped, norm = clip_update({"w": w, "b": b}, clipping_norm=clipping_norm)

    assert l2_norm(clipped) <= clipping_norm * (1 + 1e-6)  # float32 rounding
    assert norm == pytest.approx(l2_norm({"w": w, "b": b}))
    if norm <= clipping_norm:
        np.testing.assert_array_equal(clipped["w"], w)


def test_noise_free_round_is_the_clipped_sum_over_expected_clients() -> None:
    # Norms: 0.2 * 2 = 0.4 (kept), 5 * 2 = 10 (clipped to 1), 0.1 * 2 = 0.2 (kept).
    new = dp().aggregate(global_model=GLOBAL, updates=updates(0.2, 5.0, 0.1))

    np.testing.assert_allclose(new["w"], (0.2 + 0.5 + 0.1) / 3, rtol=1e-6)


def test_noise_is_reproducible_with_a_seeded_generator() -> None:
    first = dp(noise=1.0, seed=42).aggregate(global_model=GLOBAL, updates=updates(1, 2, 3))
    again = dp(noise=1.0, seed=42).aggregate(global_model=GLOBAL, updates=updates(1, 2, 3))
    other = dp(noise=1.0, seed=43).aggregate(global_model=GLOBAL, updates=updates(1, 2, 3))

    np.testing.assert_array_equal(first["w"], again["w"])
    assert not np.array_equal(first["w"], other["w"])


def test_noise_std_is_z_times_c_over_expected_clients() -> None:
    size, z, expected = 200_000, 2.0, 4
    zero = {"w": np.zeros(size, np.float32)}
    round_ = [ClientUpdate(f"c{i}", zero, 1) for i in range(expected)]
    strategy = DPFedAvgFixedClipping(
        FedAvg(),
        noise_multiplier=z,
        clipping_norm=3.0,
        expected_clients=expected,
        rng=np.random.default_rng(1),
    )

    noisy = strategy.aggregate(global_model=zero, updates=round_)

    assert np.std(noisy["w"]) == pytest.approx(z * 3.0 / expected, rel=0.01)


def test_missing_client_aborts_instead_of_rescaling() -> None:
    with pytest.raises(RoundAbortedError, match="2 updates, noise calibrated for 3"):
        dp().aggregate(global_model=GLOBAL, updates=updates(1, 2))


def test_other_clients_than_accounted_abort_the_round() -> None:
    with pytest.raises(RoundAbortedError) as caught:
        dp().aggregate(
            global_model=GLOBAL, updates=updates(1, 2, 3), accounted_clients=["c0", "c1", "zz"]
        )

    assert "missing ['zz']" in caught.value.reason
    assert "extra ['c2']" in caught.value.reason


def test_accounted_clients_must_match_the_calibration() -> None:
    with pytest.raises(RoundAbortedError):
        dp().aggregate(
            global_model=GLOBAL, updates=updates(1, 2, 3), accounted_clients=["c0", "c1"]
        )


def test_exactly_the_accounted_clients_pass() -> None:
    new = dp().aggregate(
        global_model=GLOBAL, updates=updates(0.1, 0.1, 0.1), accounted_clients={"c0", "c1", "c2"}
    )

    np.testing.assert_allclose(new["b"], 0.1, rtol=1e-6)


def test_wrapped_strategy_applies_the_noisy_mean_and_keeps_its_state() -> None:
    inner = FedAvgM(learning_rate=1.0, momentum=0.5)
    wrapper = DPFedAvgFixedClipping(
        inner,
        noise_multiplier=0.0,
        clipping_norm=1.0,
        expected_clients=3,
        rng=np.random.default_rng(0),
    )

    first = wrapper.aggregate(global_model=GLOBAL, updates=updates(0.1, 0.1, 0.1))
    second = wrapper.aggregate(global_model=first, updates=updates(0.1, 0.1, 0.1))

    np.testing.assert_allclose(second["w"], 0.1 + 0.15, rtol=1e-6)
    assert set(wrapper.state()) == {"momentum/w", "momentum/b"}


def test_update_noise_multiplier_golden_value() -> None:
    # Andrew et al. 2021: z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2); z = 1, sigma_b = 5.
    assert update_noise_multiplier(noise_multiplier=1.0, clipped_count_stddev=5.0) == (
        pytest.approx((1 - 1 / 100) ** -0.5)
    )
    with pytest.raises(IncompatibleUpdateError):
        update_noise_multiplier(noise_multiplier=1.0, clipped_count_stddev=0.5)


def test_adaptive_norm_update_golden_value() -> None:
    new = adapt_clipping_norm(
        clipping_norm=1.0,
        noisy_unclipped_fraction=1.0,
        target_unclipped_quantile=0.5,
        clip_learning_rate=0.2,
    )

    assert new == pytest.approx(math.exp(-0.1))


def adaptive(initial: float) -> DPFedAvgAdaptiveClipping:
    return DPFedAvgAdaptiveClipping(
        FedAvg(),
        noise_multiplier=0.0,
        initial_clipping_norm=initial,
        expected_clients=3,
        rng=np.random.default_rng(0),
        clipped_count_stddev=0.0,
    )


def test_adaptive_clipping_moves_towards_the_norms() -> None:
    small, large = adaptive(initial=100.0), adaptive(initial=0.01)

    for _ in range(80):  # from 0.01 the norm grows by exp(0.1) per round
        small.aggregate(global_model=GLOBAL, updates=updates(0.5, 0.6, 0.7))
        large.aggregate(global_model=GLOBAL, updates=updates(0.5, 0.6, 0.7))

    # Norms are 1.0, 1.2 and 1.4: the median-targeting norm ends near them.
    assert 0.8 < small.clipping_norm < 2.0
    assert 0.8 < large.clipping_norm < 2.0


def test_adaptive_state_round_trip() -> None:
    first = adaptive(initial=5.0)
    first.aggregate(global_model=GLOBAL, updates=updates(0.5, 0.6, 0.7))
    restored = adaptive(initial=1.0)

    restored.load_state(first.state())

    assert restored.clipping_norm == first.clipping_norm


def test_without_a_generator_the_noise_is_fresh_on_every_round() -> None:
    size, z, expected = 200_000, 2.0, 4
    zero = {"w": np.zeros(size, np.float32)}
    round_ = [ClientUpdate(f"c{i}", zero, 1) for i in range(expected)]

    def secure() -> DPFedAvgFixedClipping:  # as the aggregator builds it: no rng
        return DPFedAvgFixedClipping(
            FedAvg(), noise_multiplier=z, clipping_norm=3.0, expected_clients=expected
        )

    first = secure().aggregate(global_model=zero, updates=round_)
    again = secure().aggregate(global_model=zero, updates=round_)

    assert not np.array_equal(first["w"], again["w"])
    for noisy in (first, again):
        assert first["w"].dtype == np.float32
        assert np.std(noisy["w"]) == pytest.approx(z * 3.0 / expected, rel=0.01)
        assert abs(np.mean(noisy["w"])) < 5 * z * 3.0 / expected / math.sqrt(size)


def test_secure_draws_are_standard_normal() -> None:
    draws = secure_standard_normal((400_001,))

    assert draws.shape == (400_001,)
    assert abs(draws.mean()) < 0.01  # 6 standard errors
    assert draws.std() == pytest.approx(1.0, rel=0.01)
    assert np.mean(np.abs(draws) < 1.0) == pytest.approx(0.6827, abs=0.005)
    assert not np.array_equal(secure_standard_normal((8,)), secure_standard_normal((8,)))


@FAST
@given(
    scales=st.lists(st.floats(-3, 3, width=32), min_size=3, max_size=3),
    order=st.permutations([0, 1, 2]),
)
def test_the_clipped_sum_is_the_same_bytes_in_any_order(
    scales: list[float], order: list[int]
) -> None:
    round_ = updates(*scales)

    forward = dp(noise=1.0, seed=5).aggregate(global_model=GLOBAL, updates=round_)
    permuted = dp(noise=1.0, seed=5).aggregate(
        global_model=GLOBAL, updates=[round_[i] for i in order]
    )

    assert {k: v.tobytes() for k, v in forward.items()} == {
        k: v.tobytes() for k, v in permuted.items()
    }
