"""Shared machinery of the adaptive server optimizers (FedAdagrad, FedAdam, FedYogi).

Reddi, Charles, Zaheer, Garrett, Rush, Konecny, Kumar and McMahan (2021), "Adaptive
Federated Optimization", ICLR, Algorithm 2: with the mean client delta as the
pseudo-gradient,

    m_t = beta_1 * m_{t-1} + (1 - beta_1) * delta_t
    v_t = (optimizer-specific update of v_{t-1} with delta_t ** 2)
    x_{t+1} = x_t + eta * m_t / (sqrt(v_t) + tau)

with m_{-1} = 0 and v_{-1} = tau ** 2, and no bias correction (as in the paper).
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from fedbus.aggregation.errors import IncompatibleUpdateError
from fedbus.aggregation.fedavg import FedAvg
from fedbus.aggregation.helpers import check_same_layout
from fedbus.aggregation.updates import FloatArray, Model, NamedArrays

__all__ = ["AdaptiveFedOpt", "split_state"]


class AdaptiveFedOpt(FedAvg):
    """FedAvg's weighted mean delta, applied by an adaptive server optimizer.

    Parameters
    ----------
    learning_rate
        Server learning rate eta.
    beta_1
        Decay of the first moment.
    beta_2
        Decay of the second moment (unused by FedAdagrad).
    tau
        Adaptivity: added to sqrt(v); v starts at tau ** 2.
    """

    def __init__(
        self,
        *,
        learning_rate: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.99,
        tau: float = 1e-3,
    ) -> None:
        if not (learning_rate > 0 and tau > 0 and 0 <= beta_1 < 1 and 0 <= beta_2 < 1):
            raise IncompatibleUpdateError("need learning_rate > 0, tau > 0, betas in [0, 1)")
        self.learning_rate, self.beta_1, self.beta_2, self.tau = learning_rate, beta_1, beta_2, tau
        self._m: Model = {}
        self._v: Model = {}

    @abstractmethod
    def _second_moment(self, v: FloatArray, delta_squared: FloatArray) -> FloatArray:
        """v_t from v_{t-1} and delta_t ** 2."""

    def apply(self, *, global_model: NamedArrays, delta: NamedArrays) -> Model:
        """One adaptive server step; updates the moments."""
        check_same_layout(global_model, delta, who="delta")
        if not self._m:
            self._initialise(global_model)
        check_same_layout(global_model, self._m, who="optimizer state")
        new_model: Model = {}
        for name, weights in global_model.items():
            step = np.asarray(delta[name], dtype=self._m[name].dtype)
            self._m[name] = self.beta_1 * self._m[name] + (1 - self.beta_1) * step
            self._v[name] = self._second_moment(self._v[name], step * step)
            update = self.learning_rate * self._m[name] / (np.sqrt(self._v[name]) + self.tau)
            new_model[name] = (weights + update).astype(weights.dtype, copy=False)
        return new_model

    def state(self) -> Model:
        """First and second moments as ``m/<name>`` and ``v/<name>`` arrays."""
        return {
            **{f"m/{name}": array.copy() for name, array in self._m.items()},
            **{f"v/{name}": array.copy() for name, array in self._v.items()},
        }

    def load_state(self, state: NamedArrays) -> None:
        """Restore the moments saved by :meth:`state`."""
        parts = split_state(state, prefixes=("m", "v"))
        check_same_layout(parts["m"], parts["v"], who="optimizer state")
        self._m, self._v = parts["m"], parts["v"]

    def _initialise(self, global_model: NamedArrays) -> None:
        for name, weights in global_model.items():
            dtype = np.result_type(weights.dtype, np.float32)
            self._m[name] = np.zeros(np.shape(weights), dtype=dtype)
            self._v[name] = np.full(np.shape(weights), self.tau**2, dtype=dtype)


def split_state(state: NamedArrays, *, prefixes: tuple[str, ...]) -> dict[str, Model]:
    """Split ``"<prefix>/<name>"`` keys into one model per prefix; reject other keys."""
    parts: dict[str, Model] = {prefix: {} for prefix in prefixes}
    for key, array in state.items():
        prefix, _, name = key.partition("/")
        if prefix not in parts or not name:
            raise IncompatibleUpdateError(f"unexpected optimizer state key {key!r}")
        parts[prefix][name] = np.array(array, copy=True)
    return parts
