"""Central DP with a fixed clipping norm (DP-FedAvg), failing closed.

McMahan, Ramage, Talwar and Zhang (2018), "Learning Differentially Private Recurrent
Language Models", ICLR, with the server-side wrapper shape of Flower's
``DifferentialPrivacyServerSideFixedClipping``. The guarantee is user-level and is
accounted (by the privacy-accountant) for exactly ``expected_clients`` clipped
contributions with noise ``noise_multiplier * clipping_norm`` on their sum. Any round
that does not match (a client missing, an extra one, another client in its place) is
aborted with :class:`RoundAbortedError`; it is never rescaled to fit.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import NoReturn

import numpy as np

from fedbus.aggregation.clipping import NoisyMean, noisy_clipped_mean
from fedbus.aggregation.errors import IncompatibleUpdateError, RoundAbortedError
from fedbus.aggregation.strategy import Strategy, check_round
from fedbus.aggregation.updates import ClientUpdate, Model, NamedArrays

__all__ = ["DPFedAvgFixedClipping"]

logger = logging.getLogger(__name__)


class DPFedAvgFixedClipping(Strategy):
    """Clip each delta to C, add N(0, (z C)^2) to the sum, divide by the expected count.

    The wrapped strategy only *applies* the noisy mean (for example with server
    momentum, which is post-processing); its own combining is bypassed, because a
    sample-weighted or robust combination would change the sensitivity.

    Parameters
    ----------
    strategy
        The strategy whose :meth:`~Strategy.apply` moves the global model.
    noise_multiplier
        z: noise standard deviation over the clipping norm.
    clipping_norm
        C: the L2 bound of each client's delta.
    expected_clients
        The number of clients the noise was calibrated and the round accounted for.
    rng
        None (the default, and what production uses): the noise comes from the OS's
        CSPRNG, fresh each round, so knowing the job's seed does not give it away.
        Tests may inject a seeded generator to repeat a round.
    """

    def __init__(
        self,
        strategy: Strategy,
        *,
        noise_multiplier: float,
        clipping_norm: float,
        expected_clients: int,
        rng: np.random.Generator | None = None,
    ) -> None:
        if noise_multiplier < 0 or not clipping_norm > 0 or expected_clients < 1:
            raise IncompatibleUpdateError(
                "need noise_multiplier >= 0, clipping_norm > 0 and expected_clients >= 1"
            )
        self.strategy = strategy
        self.noise_multiplier = noise_multiplier
        self.clipping_norm = clipping_norm
        self.expected_clients = expected_clients
        self.rng = rng

    def aggregate(
        self,
        *,
        global_model: NamedArrays,
        updates: Sequence[ClientUpdate],
        accounted_clients: Collection[str] | None = None,
    ) -> Model:
        """The next global model, or :class:`RoundAbortedError` if the round is not as accounted.

        Parameters
        ----------
        accounted_clients
            The client ids the privacy-accountant charged for this round. When given,
            the updates must come from exactly these clients.
        """
        check_round(global_model=global_model, updates=updates)
        if accounted_clients is not None:
            self._check_clients(updates, accounted_clients)
        return self.apply(global_model=global_model, delta=self.combine(updates))

    def combine(self, updates: Sequence[ClientUpdate]) -> Model:
        """Noisy mean of the clipped deltas over ``expected_clients``."""
        return self._noisy_mean(updates).delta

    def apply(self, *, global_model: NamedArrays, delta: NamedArrays) -> Model:
        """Delegate to the wrapped strategy."""
        return self.strategy.apply(global_model=global_model, delta=delta)

    def state(self) -> Model:
        """The wrapped strategy's state."""
        return self.strategy.state()

    def load_state(self, state: NamedArrays) -> None:
        """Restore the wrapped strategy's state."""
        self.strategy.load_state(state)

    def _update_noise_std(self) -> float:
        return self.noise_multiplier * self.clipping_norm

    def _noisy_mean(self, updates: Sequence[ClientUpdate]) -> NoisyMean:
        if len(updates) != self.expected_clients:
            self._abort(f"{len(updates)} updates, noise calibrated for {self.expected_clients}")
        return noisy_clipped_mean(
            updates,
            clipping_norm=self.clipping_norm,
            noise_std=self._update_noise_std(),
            denominator=self.expected_clients,
            rng=self.rng,
        )

    def _check_clients(
        self, updates: Sequence[ClientUpdate], accounted_clients: Collection[str]
    ) -> None:
        accounted = set(accounted_clients)
        if len(accounted) != len(accounted_clients) or len(accounted) != self.expected_clients:
            self._abort(
                f"{len(accounted_clients)} accounted clients, expected {self.expected_clients}"
            )
        received = {update.client_id for update in updates}
        if received != accounted:
            missing, extra = sorted(accounted - received), sorted(received - accounted)
            self._abort(f"updates differ from accounted clients: missing {missing}, extra {extra}")

    def _abort(self, reason: str) -> NoReturn:
        logger.warning("central-DP round aborted: %s", reason)
        raise RoundAbortedError(reason)
