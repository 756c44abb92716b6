"""FedAdam (Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2)."""

from __future__ import annotations

from fedbus.aggregation._fedopt import AdaptiveFedOpt
from fedbus.aggregation.updates import FloatArray

__all__ = ["FedAdam"]


class FedAdam(AdaptiveFedOpt):
    """Adam on the server: ``v_t = beta_2 * v_{t-1} + (1 - beta_2) * delta_t ** 2``."""

    def _second_moment(self, v: FloatArray, delta_squared: FloatArray) -> FloatArray:
        return self.beta_2 * v + (1 - self.beta_2) * delta_squared
