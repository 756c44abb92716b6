"""Renyi-DP accounting of the Poisson-subsampled Gaussian mechanism (pure math).

The first of Opacus's three accounting layers, without torch: RDP per order from
``dp-accounting`` (see :mod:`fedbus.privacy._sgm` for the refinement at fractional
orders), composition by summing RDP over the history, and the conversion to
(epsilon, delta)-DP of Balle et al. (2020), "Hypothesis Testing Interpretations and
Renyi Differential Privacy", Theorem 21, as implemented by
``dp_accounting.rdp.compute_epsilon`` (the same formula as Opacus's
``get_privacy_spent``; dp-accounting adds a KL shortcut and clamps at zero, neither
of which changes results in the regimes tested). Every function is keyword-only so
that two floats cannot be swapped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedbus.privacy._sgm import rdp_per_step
from fedbus.privacy.errors import InvalidPrivacyParameterError, UnreachableTargetError

__all__ = [
    "DEFAULT_RDP_ORDERS",
    "GaussianSteps",
    "compute_epsilon",
    "compute_epsilon_composed",
    "compute_rdp",
    "noise_multiplier_for",
    "rdp_to_epsilon",
]

#: Opacus's default RDP orders (``RDPAccountant.DEFAULT_ALPHAS``).
DEFAULT_RDP_ORDERS: tuple[float, ...] = tuple(
    [1 + x / 10.0 for x in range(1, 100)] + [float(x) for x in range(12, 64)]
)

_MAX_NOISE_MULTIPLIER = 1e6


@dataclass(frozen=True, slots=True)
class GaussianSteps:
    """``steps`` runs of the Gaussian mechanism on a Poisson sample of rate ``sample_rate``.

    Parameters
    ----------
    noise_multiplier
        Ratio of the noise standard deviation to the L2 sensitivity (>= 0).
    sample_rate
        Poisson sampling probability of each record (or client), in [0, 1].
    steps
        Number of steps (>= 0).
    """

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        _check_mechanism(
            noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate, steps=self.steps
        )


def compute_rdp(
    *,
    sample_rate: float,
    noise_multiplier: float,
    steps: int,
    orders: Sequence[float] = DEFAULT_RDP_ORDERS,
) -> NDArray[np.float64]:
    """RDP of ``steps`` runs of the Poisson-subsampled Gaussian mechanism.

    Parameters
    ----------
    sample_rate
        Poisson sampling probability, in [0, 1].
    noise_multiplier
        Noise standard deviation over L2 sensitivity, >= 0 (0 means no privacy).
    steps
        Number of steps, >= 0.
    orders
        RDP orders (alphas), each > 1.

    Returns
    -------
    numpy.ndarray
        RDP at each order (``inf`` where there is no privacy).
    """
    _check_mechanism(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
    order_tuple = _check_orders(orders)
    if steps == 0:
        return np.zeros(len(order_tuple), dtype=np.float64)
    return steps * rdp_per_step(float(sample_rate), float(noise_multiplier), order_tuple)


def rdp_to_epsilon(
    *, orders: Sequence[float], rdp: Sequence[float] | NDArray[np.float64], delta: float
) -> tuple[float, float]:
    """Convert RDP values to (epsilon, delta)-DP (Balle et al. 2020, Theorem 21).

    The formula of Opacus's ``get_privacy_spent``, order by order, with two edges
    Opacus's accountant has too: an RDP of zero at every order is no mechanism at all
    (epsilon 0, as for an empty history), and epsilon is never below zero.

    Returns
    -------
    tuple of float
        The smallest epsilon over the orders and the order that achieves it.
    """
    _check_delta(delta)
    order_arr = np.asarray(_check_orders(orders), dtype=np.float64)
    rdp_arr = np.asarray([float(value) for value in rdp], dtype=np.float64)
    if len(order_arr) != len(rdp_arr):
        raise InvalidPrivacyParameterError("orders and rdp must have the same length")
    if not np.any(rdp_arr):
        return 0.0, float(order_arr[0])
    with np.errstate(invalid="ignore"):  # inf - inf at an order without privacy: NaN, skipped
        eps = (
            rdp_arr
            - (math.log(delta) + np.log(order_arr)) / (order_arr - 1)
            + np.log((order_arr - 1) / order_arr)
        )
    if np.isnan(eps).all():
        return math.inf, math.nan
    best = int(np.nanargmin(eps))
    return max(0.0, float(eps[best])), float(order_arr[best])


def compute_epsilon(
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    orders: Sequence[float] = DEFAULT_RDP_ORDERS,
) -> float:
    """Epsilon spent by ``steps`` runs of the Poisson-subsampled Gaussian mechanism.

    Examples
    --------
    >>> round(compute_epsilon(noise_multiplier=1.5, sample_rate=0.04, steps=2250,
    ...                       delta=1e-5), 6)
    7.329111
    """
    history = [GaussianSteps(noise_multiplier, sample_rate, steps)]
    return compute_epsilon_composed(history=history, delta=delta, orders=orders)


def compute_epsilon_composed(
    *,
    history: Iterable[GaussianSteps],
    delta: float,
    orders: Sequence[float] = DEFAULT_RDP_ORDERS,
) -> float:
    """Epsilon of the sequential composition of a history of mechanisms.

    RDP composes by addition at each order; the sum is converted once, which is
    tighter than adding per-mechanism epsilons.
    """
    total = np.zeros(len(_check_orders(orders)), dtype=np.float64)
    for item in history:
        total += compute_rdp(
            sample_rate=item.sample_rate,
            noise_multiplier=item.noise_multiplier,
            steps=item.steps,
            orders=orders,
        )
    return rdp_to_epsilon(orders=orders, rdp=total, delta=delta)[0]


def noise_multiplier_for(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    orders: Sequence[float] = DEFAULT_RDP_ORDERS,
    epsilon_tolerance: float = 0.01,
) -> float:
    """Smallest noise multiplier found whose epsilon is at most ``target_epsilon``.

    A bisection like Opacus's ``get_noise_multiplier``: the returned multiplier
    spends an epsilon in ``[target_epsilon - epsilon_tolerance, target_epsilon]``.

    Raises
    ------
    InvalidPrivacyParameterError
        If the inputs are out of range, or if ``steps`` or ``sample_rate`` is 0: no record
        is ever used, every noise multiplier spends epsilon 0, and none is the answer.
    UnreachableTargetError
        If even a noise multiplier of 1e6 spends more than the target.
    """
    if not target_epsilon > 0 or not epsilon_tolerance > 0:
        raise InvalidPrivacyParameterError("target_epsilon and epsilon_tolerance must be > 0")
    _check_mechanism(noise_multiplier=0.0, sample_rate=sample_rate, steps=steps)
    _check_delta(delta)
    _check_orders(orders)
    if steps == 0 or sample_rate == 0:
        # The bisection below would halve forever: epsilon is 0 for every sigma.
        raise InvalidPrivacyParameterError(
            f"no noise multiplier to find: steps={steps} and sample_rate={sample_rate}"
            " spend no privacy at any noise (both must be > 0)"
        )

    def epsilon_at(sigma: float) -> float:
        return compute_epsilon(
            noise_multiplier=sigma, sample_rate=sample_rate, steps=steps, delta=delta, orders=orders
        )

    sigma_low, sigma_high, eps_high = 0.0, 10.0, math.inf
    while eps_high > target_epsilon:
        sigma_high *= 2.0
        if sigma_high > _MAX_NOISE_MULTIPLIER:
            raise UnreachableTargetError(f"target epsilon {target_epsilon} is unreachable")
        eps_high = epsilon_at(sigma_high)
    while target_epsilon - eps_high > epsilon_tolerance:
        sigma = (sigma_low + sigma_high) / 2.0
        eps = epsilon_at(sigma)
        if eps < target_epsilon:
            sigma_high, eps_high = sigma, eps
        else:
            sigma_low = sigma
    return sigma_high


def _check_mechanism(*, noise_multiplier: float, sample_rate: float, steps: int) -> None:
    if not 0.0 <= sample_rate <= 1.0:
        raise InvalidPrivacyParameterError(f"sample_rate must be in [0, 1], got {sample_rate}")
    if not noise_multiplier >= 0.0 or math.isinf(noise_multiplier):
        raise InvalidPrivacyParameterError(
            f"noise_multiplier must be finite and >= 0, got {noise_multiplier}"
        )
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
        raise InvalidPrivacyParameterError(f"steps must be an integer >= 0, got {steps!r}")


def _check_delta(delta: float) -> None:
    if not 0.0 < delta < 1.0:
        raise InvalidPrivacyParameterError(f"delta must be in (0, 1), got {delta}")


def _check_orders(orders: Sequence[float]) -> tuple[float, ...]:
    order_tuple = tuple(float(order) for order in orders)
    if not order_tuple or any(not order > 1.0 for order in order_tuple):
        raise InvalidPrivacyParameterError("orders must be a non-empty sequence of values > 1")
    return order_tuple
