"""A stateful RDP accountant folding a history of Gaussian mechanisms.

The second of Opacus's three layers (``opacus.accountants.RDPAccountant``) without
torch: it keeps the history of ``(noise_multiplier, sample_rate, steps)`` and folds
consecutive runs with the same parameters, as Opacus does, so the history stays
short over a long training.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fedbus.privacy.rdp import DEFAULT_RDP_ORDERS, GaussianSteps, compute_epsilon_composed

__all__ = ["RdpAccountant"]

logger = logging.getLogger(__name__)


class RdpAccountant:
    """Accumulate Poisson-subsampled Gaussian steps and report epsilon.

    Parameters
    ----------
    orders
        RDP orders used for the conversion to (epsilon, delta).

    Examples
    --------
    >>> accountant = RdpAccountant()
    >>> accountant.step(noise_multiplier=1.5, sample_rate=0.04, steps=2000)
    >>> accountant.step(noise_multiplier=1.5, sample_rate=0.04, steps=250)
    >>> round(accountant.get_epsilon(delta=1e-5), 6)
    7.329111
    """

    def __init__(self, *, orders: Sequence[float] = DEFAULT_RDP_ORDERS) -> None:
        self._orders = tuple(float(order) for order in orders)
        self._history: list[GaussianSteps] = []

    @property
    def history(self) -> tuple[GaussianSteps, ...]:
        """The folded history, oldest first."""
        return tuple(self._history)

    def step(self, *, noise_multiplier: float, sample_rate: float, steps: int = 1) -> None:
        """Record ``steps`` runs of the mechanism.

        Consecutive runs with the same noise multiplier and sample rate are folded
        into one history item.
        """
        item = GaussianSteps(noise_multiplier, sample_rate, steps)
        last = self._history[-1] if self._history else None
        if last is not None and (last.noise_multiplier, last.sample_rate) == (
            noise_multiplier,
            sample_rate,
        ):
            self._history[-1] = GaussianSteps(noise_multiplier, sample_rate, last.steps + steps)
        else:
            self._history.append(item)

    def get_epsilon(self, *, delta: float) -> float:
        """Epsilon spent so far at the given delta (0.0 before any step)."""
        if not self._history:
            return 0.0
        return compute_epsilon_composed(history=self._history, delta=delta, orders=self._orders)

    def __len__(self) -> int:
        """Number of folded history items."""
        return len(self._history)
