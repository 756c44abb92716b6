"""RDP accounting math: golden values from Opacus and TF-Privacy, and properties."""

from __future__ import annotations

import math

import dp_accounting
import mpmath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbus.privacy import (
    DEFAULT_RDP_ORDERS,
    GaussianSteps,
    InvalidPrivacyParameterError,
    UnreachableTargetError,
    compute_epsilon,
    compute_epsilon_composed,
    compute_rdp,
    noise_multiplier_for,
    rdp_to_epsilon,
)

# Orders of TF-Privacy's compute_dp_sgd_privacy_lib.compute_dp_sgd_privacy.
TF_PRIVACY_ORDERS = [1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5]
TF_PRIVACY_ORDERS += [float(x) for x in range(5, 64)] + [128.0, 256.0, 512.0]

FAST = settings(max_examples=15, deadline=None)


def test_opacus_golden_value() -> None:
    # opacus tests/accountants_test.py::test_rdp_accountant expects 7.32911117143.
    epsilon = compute_epsilon(noise_multiplier=1.5, sample_rate=0.04, steps=2250, delta=1e-5)

    assert epsilon == pytest.approx(7.32911117143, abs=1e-6)


@pytest.mark.parametrize(
    ("n", "batch_size", "sigma", "epochs", "delta", "expected_eps", "expected_order", "rel"),
    [
        (60_000, 150, 1.3, 15, 1e-5, 0.7242234026109595, 19.0, 1e-9),
        (100_000, 100, 1.0, 30, 1e-7, 1.4154988495444842, 13.0, 1e-9),
        (100_000_000, 1024, 0.1, 10, 1e-7, 5907982.3113978775, 1.25, 1e-9),
    ],
)
def test_tf_privacy_compute_dp_sgd_privacy_golden_values(
    n: int,
    batch_size: int,
    sigma: float,
    epochs: int,
    delta: float,
    expected_eps: float,
    expected_order: float,
    rel: float,
) -> None:
    # tensorflow/privacy compute_dp_sgd_privacy_test.py::test_compute_dp_sgd_privacy.
    # The third case is optimal at the fractional order 1.25, where dp-accounting's
    # bound is a little looser than the exact series: 2.7e-12 relative apart.
    steps = math.ceil(epochs * n / batch_size)
    rdp = compute_rdp(
        sample_rate=batch_size / n, noise_multiplier=sigma, steps=steps, orders=TF_PRIVACY_ORDERS
    )

    epsilon, order = rdp_to_epsilon(orders=TF_PRIVACY_ORDERS, rdp=rdp, delta=delta)

    assert epsilon == pytest.approx(expected_eps, rel=rel)
    assert order == expected_order


@pytest.mark.parametrize("order", [1.5, 3.9, 12.0])
def test_rdp_matches_numerical_integration(order: float) -> None:
    # A_alpha = E_{z ~ N(0, s^2)} [((1 - q) + q * exp((2z - 1) / (2 s^2)))^alpha].
    q, sigma = mpmath.mpf("0.04"), mpmath.mpf("1.5")
    mpmath.mp.dps = 30

    def integrand(z: mpmath.mpf) -> mpmath.mpf:
        ratio = mpmath.exp((2 * z - 1) / (2 * sigma**2))
        return mpmath.npdf(z, 0, sigma) * ((1 - q) + q * ratio) ** order

    a_alpha = mpmath.quad(integrand, [-mpmath.inf, -10, 0, 1, 10, 40, mpmath.inf])
    exact = float(mpmath.log(a_alpha) / (order - 1))

    rdp = compute_rdp(sample_rate=0.04, noise_multiplier=1.5, steps=1, orders=[order])

    assert rdp[0] == pytest.approx(exact, rel=1e-9)


def test_rdp_never_exceeds_the_library_upper_bound() -> None:
    accountant = dp_accounting.rdp.RdpAccountant(orders=list(DEFAULT_RDP_ORDERS))
    event = dp_accounting.PoissonSampledDpEvent(0.04, dp_accounting.GaussianDpEvent(1.5))
    accountant.compose(event, 2250)

    ours = compute_rdp(sample_rate=0.04, noise_multiplier=1.5, steps=2250)

    assert all(ours <= accountant.rdp * (1 + 1e-12))


def test_composed_history_equals_single_run_with_summed_steps() -> None:
    history = [GaussianSteps(1.5, 0.04, 1000), GaussianSteps(1.5, 0.04, 1250)]

    composed = compute_epsilon_composed(history=history, delta=1e-5)

    assert composed == pytest.approx(7.32911117143, abs=1e-6)


def test_no_steps_spends_nothing_and_no_noise_spends_everything() -> None:
    assert compute_epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=0, delta=1e-5) == 0.0
    assert math.isinf(compute_epsilon(noise_multiplier=0.0, sample_rate=0.1, steps=1, delta=1e-5))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"noise_multiplier": -1.0, "sample_rate": 0.1, "steps": 1, "delta": 1e-5},
        {"noise_multiplier": 1.0, "sample_rate": 1.5, "steps": 1, "delta": 1e-5},
        {"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": -1, "delta": 1e-5},
        {"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 1, "delta": 0.0},
        {"noise_multiplier": math.nan, "sample_rate": 0.1, "steps": 1, "delta": 1e-5},
    ],
)
def test_invalid_parameters_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidPrivacyParameterError):
        compute_epsilon(**kwargs)  # type: ignore[arg-type]


def test_noise_multiplier_matches_opacus_get_noise_multiplier() -> None:
    # opacus.accountants.utils.get_noise_multiplier(target_epsilon=3.0,
    # target_delta=1e-5, sample_rate=0.04, steps=2250, accountant="rdp") returns
    # 2.958984375 (run against opacus 1.6.0 when this test was written).
    sigma = noise_multiplier_for(target_epsilon=3.0, delta=1e-5, sample_rate=0.04, steps=2250)

    assert sigma == pytest.approx(2.958984375, abs=1e-12)


@settings(max_examples=6, deadline=None)
@given(
    target=st.floats(min_value=0.5, max_value=10.0),
    sample_rate=st.floats(min_value=0.001, max_value=0.2),
)
def test_noise_multiplier_for_meets_the_target_within_tolerance(
    target: float, sample_rate: float
) -> None:
    sigma = noise_multiplier_for(
        target_epsilon=target, delta=1e-5, sample_rate=sample_rate, steps=100
    )

    spent = compute_epsilon(noise_multiplier=sigma, sample_rate=sample_rate, steps=100, delta=1e-5)

    assert target - 0.01 <= spent <= target


def test_unreachable_target_raises() -> None:
    with pytest.raises(UnreachableTargetError):
        noise_multiplier_for(target_epsilon=1e-9, delta=1e-5, sample_rate=1.0, steps=10**6)


@pytest.mark.parametrize(
    ("q", "sigma", "steps", "delta", "opacus_epsilon"),
    [
        (1e-9, 1.0, 100_000, 1e-5, 0.17029122270338343),
        (1e-7, 2.0, 1_000, 1e-5, 0.10286725130080138),
        (1e-6, 1.0, 100_000, 1e-5, 0.27830491409412633),
        (0.01, 0.8, 10, 1e-6, 2.221013350703249),
        (1.0, 5.0, 3, 1e-5, 1.445621967952188),
    ],
)
def test_epsilon_equals_opacus_at_tiny_and_ordinary_rates(
    q: float, sigma: float, steps: int, delta: float, opacus_epsilon: float
) -> None:
    # opacus 1.6.0: get_privacy_spent(orders=DEFAULT_ALPHAS, rdp=compute_rdp(q=q,
    # noise_multiplier=sigma, steps=steps, orders=DEFAULT_ALPHAS), delta=delta)[0].
    # dp-accounting's KL shortcut said 0.0 for the first two.
    epsilon = compute_epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta)

    assert epsilon == pytest.approx(opacus_epsilon, abs=1e-6)


@pytest.mark.parametrize(
    ("sample_rate", "steps"), [(0.0, 100), (0.1, 0), (0.0, 0)], ids=["rate-0", "steps-0", "both"]
)
def test_noise_multiplier_for_refuses_a_mechanism_that_spends_nothing(
    sample_rate: float, steps: int
) -> None:
    # Epsilon is 0 at every sigma: the search used to halve sigma for ever.
    with pytest.raises(InvalidPrivacyParameterError, match="spend no privacy"):
        noise_multiplier_for(target_epsilon=1.0, delta=1e-5, sample_rate=sample_rate, steps=steps)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sample_rate": 1.5, "steps": 10, "delta": 1e-5},
        {"sample_rate": 0.1, "steps": -1, "delta": 1e-5},
        {"sample_rate": 0.1, "steps": 10, "delta": 0.0},
        {"sample_rate": math.nan, "steps": 10, "delta": 1e-5},
        {"sample_rate": 0.1, "steps": 10, "delta": 1e-5, "target_epsilon": 0.0},
        {"sample_rate": 0.1, "steps": 10, "delta": 1e-5, "orders": [1.0, 2.0]},
    ],
)
def test_noise_multiplier_for_rejects_impossible_inputs(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"target_epsilon": 1.0, **kwargs}
    with pytest.raises(InvalidPrivacyParameterError) as caught:
        noise_multiplier_for(**args)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)


@FAST
@given(
    sigma=st.floats(min_value=0.5, max_value=5.0),
    q=st.floats(min_value=0.001, max_value=0.5),
    steps=st.integers(min_value=1, max_value=5000),
    extra=st.integers(min_value=1, max_value=5000),
)
def test_epsilon_grows_with_steps(sigma: float, q: float, steps: int, extra: int) -> None:
    fewer = compute_epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=1e-5)
    more = compute_epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps + extra, delta=1e-5)

    assert more >= fewer


@FAST
@given(
    sigma=st.floats(min_value=0.5, max_value=5.0),
    q=st.floats(min_value=0.001, max_value=0.4),
    factor=st.floats(min_value=1.05, max_value=2.5),
)
def test_epsilon_grows_with_sample_rate(sigma: float, q: float, factor: float) -> None:
    low = compute_epsilon(noise_multiplier=sigma, sample_rate=q, steps=500, delta=1e-5)
    high = compute_epsilon(noise_multiplier=sigma, sample_rate=q * factor, steps=500, delta=1e-5)

    assert high >= low


@FAST
@given(
    sigma=st.floats(min_value=0.5, max_value=5.0),
    q=st.floats(min_value=0.001, max_value=0.5),
    factor=st.floats(min_value=1.05, max_value=3.0),
)
def test_epsilon_falls_with_noise(sigma: float, q: float, factor: float) -> None:
    noisy = compute_epsilon(noise_multiplier=sigma * factor, sample_rate=q, steps=500, delta=1e-5)
    quiet = compute_epsilon(noise_multiplier=sigma, sample_rate=q, steps=500, delta=1e-5)

    assert noisy <= quiet
