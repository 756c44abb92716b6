"""FedAvgM: federated averaging with server momentum.

Hsu, Qi and Brown (2019), "Measuring the Effects of Non-Identical Data Distribution
for Federated Visual Classification", and the FedOpt framing of Reddi et al. (2021),
"Adaptive Federated Optimization": with the weighted mean delta as the
pseudo-gradient, ``u_t = momentum * u_{t-1} + delta_t`` and
``x_{t+1} = x_t + learning_rate * u_t``.
"""

from __future__ import annotations

import numpy as np

from fedbus.aggregation._fedopt import split_state
from fedbus.aggregation.errors import IncompatibleUpdateError
from fedbus.aggregation.fedavg import FedAvg
from fedbus.aggregation.helpers import check_same_layout
from fedbus.aggregation.updates import Model, NamedArrays

__all__ = ["FedAvgM"]


class FedAvgM(FedAvg):
    """FedAvg with server momentum (state: ``momentum/<name>`` arrays).

    Parameters
    ----------
    learning_rate
        Server learning rate; 1.0 with momentum 0 is plain FedAvg.
    momentum
        Server momentum in [0, 1).
    """

    def __init__(self, *, learning_rate: float = 1.0, momentum: float = 0.9) -> None:
        if not (learning_rate > 0 and 0 <= momentum < 1):
            raise IncompatibleUpdateError("need learning_rate > 0 and momentum in [0, 1)")
        self.learning_rate, self.momentum = learning_rate, momentum
        self._velocity: Model = {}

    def apply(self, *, global_model: NamedArrays, delta: NamedArrays) -> Model:
        """One momentum step; updates the velocity."""
        check_same_layout(global_model, delta, who="delta")
        if not self._velocity:
            self._velocity = {
                name: np.zeros(np.shape(w), dtype=np.result_type(w.dtype, np.float32))
                for name, w in global_model.items()
            }
        check_same_layout(global_model, self._velocity, who="optimizer state")
        new_model: Model = {}
        for name, weights in global_model.items():
            self._velocity[name] = self.momentum * self._velocity[name] + delta[name]
            step = self.learning_rate * self._velocity[name]
            new_model[name] = (weights + step).astype(weights.dtype, copy=False)
        return new_model

    def state(self) -> Model:
        """The velocity as ``momentum/<name>`` arrays."""
        return {f"momentum/{name}": array.copy() for name, array in self._velocity.items()}

    def load_state(self, state: NamedArrays) -> None:
        """Restore the velocity saved by :meth:`state`."""
        self._velocity = split_state(state, prefixes=("momentum",))["momentum"]
