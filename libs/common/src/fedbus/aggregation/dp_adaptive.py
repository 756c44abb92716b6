"""Central DP with adaptive clipping.

Andrew, Thakkar, McMahan and Ramaswamy (2021), "Differentially Private Learning with
Adaptive Clipping", NeurIPS. Each round, the clipping norm C moves geometrically
towards the ``target_unclipped_quantile`` of the clients' update norms:

    b_bar = (number of unclipped clients + N(0, sigma_b^2)) / m
    C <- C * exp(-clip_learning_rate * (b_bar - target_unclipped_quantile))

The noisy count spends privacy too; with an overall noise multiplier z, the updates
get the multiplier ``z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2)`` so that the pair of
releases costs what one Gaussian mechanism of multiplier z would (Theorem 1).
Account the round with z.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fedbus.aggregation.dp_fixed import DPFedAvgFixedClipping
from fedbus.aggregation.errors import IncompatibleUpdateError
from fedbus.aggregation.noise import gaussian
from fedbus.aggregation.strategy import Strategy
from fedbus.aggregation.updates import ClientUpdate, Model, NamedArrays

__all__ = ["DPFedAvgAdaptiveClipping", "adapt_clipping_norm", "update_noise_multiplier"]

_STATE_KEY = "dp/clipping_norm"
_FLOAT64 = np.dtype(np.float64)


def update_noise_multiplier(*, noise_multiplier: float, clipped_count_stddev: float) -> float:
    """The updates' noise multiplier left once the noisy count has taken its share.

    Raises
    ------
    IncompatibleUpdateError
        If ``2 * clipped_count_stddev <= noise_multiplier`` (nothing left for updates).
    """
    if noise_multiplier == 0:
        return 0.0
    remaining = noise_multiplier**-2 - (2 * clipped_count_stddev) ** -2
    if not remaining > 0:
        raise IncompatibleUpdateError("clipped_count_stddev too small for this noise multiplier")
    return float(remaining**-0.5)


def adapt_clipping_norm(
    *,
    clipping_norm: float,
    noisy_unclipped_fraction: float,
    target_unclipped_quantile: float,
    clip_learning_rate: float,
) -> float:
    """Geometric update of the clipping norm (Andrew et al. 2021, Algorithm 1)."""
    step = -clip_learning_rate * (noisy_unclipped_fraction - target_unclipped_quantile)
    return clipping_norm * math.exp(step)


class DPFedAvgAdaptiveClipping(DPFedAvgFixedClipping):
    """DP-FedAvg whose clipping norm tracks a quantile of the update norms.

    Parameters
    ----------
    strategy, noise_multiplier, expected_clients, rng
        As for :class:`DPFedAvgFixedClipping`; ``noise_multiplier`` is the overall z.
    initial_clipping_norm
        C at the first round.
    target_unclipped_quantile
        gamma: the fraction of clients that should fall under C.
    clip_learning_rate
        eta_C of the geometric update.
    clipped_count_stddev
        sigma_b, the noise on the unclipped count; default ``expected_clients / 20``
        as recommended by Andrew et al.
    """

    def __init__(
        self,
        strategy: Strategy,
        *,
        noise_multiplier: float,
        initial_clipping_norm: float,
        expected_clients: int,
        rng: np.random.Generator | None = None,
        target_unclipped_quantile: float = 0.5,
        clip_learning_rate: float = 0.2,
        clipped_count_stddev: float | None = None,
    ) -> None:
        super().__init__(
            strategy,
            noise_multiplier=noise_multiplier,
            clipping_norm=initial_clipping_norm,
            expected_clients=expected_clients,
            rng=rng,
        )
        if not 0.0 <= target_unclipped_quantile <= 1.0 or clip_learning_rate < 0:
            raise IncompatibleUpdateError("need a quantile in [0, 1] and clip_learning_rate >= 0")
        self.target_unclipped_quantile = target_unclipped_quantile
        self.clip_learning_rate = clip_learning_rate
        self.clipped_count_stddev = (
            expected_clients / 20 if clipped_count_stddev is None else clipped_count_stddev
        )
        self.update_noise_multiplier = update_noise_multiplier(
            noise_multiplier=noise_multiplier, clipped_count_stddev=self.clipped_count_stddev
        )

    def combine(self, updates: Sequence[ClientUpdate]) -> Model:
        """Noisy mean with the current C, then move C for the next round."""
        result = self._noisy_mean(updates)
        unclipped = sum(1 for norm in result.norms if norm <= self.clipping_norm)
        noise = float(gaussian((), std=self.clipped_count_stddev, dtype=_FLOAT64, rng=self.rng))
        self.clipping_norm = adapt_clipping_norm(
            clipping_norm=self.clipping_norm,
            noisy_unclipped_fraction=(unclipped + noise) / self.expected_clients,
            target_unclipped_quantile=self.target_unclipped_quantile,
            clip_learning_rate=self.clip_learning_rate,
        )
        return result.delta

    def state(self) -> Model:
        """The wrapped strategy's state plus ``dp/clipping_norm``."""
        return {**self.strategy.state(), _STATE_KEY: np.array([self.clipping_norm])}

    def load_state(self, state: NamedArrays) -> None:
        """Restore the clipping norm and the wrapped strategy's state."""
        if _STATE_KEY not in state:
            raise IncompatibleUpdateError(f"state lacks {_STATE_KEY!r}")
        self.clipping_norm = float(np.asarray(state[_STATE_KEY]).reshape(-1)[0])
        self.strategy.load_state({k: v for k, v in state.items() if k != _STATE_KEY})

    def _update_noise_std(self) -> float:
        return self.update_noise_multiplier * self.clipping_norm
