"""FedAdagrad (Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2)."""

from __future__ import annotations

from fedbus.aggregation._fedopt import AdaptiveFedOpt
from fedbus.aggregation.updates import FloatArray

__all__ = ["FedAdagrad"]


class FedAdagrad(AdaptiveFedOpt):
    """Adagrad on the server: ``v_t = v_{t-1} + delta_t ** 2`` (``beta_2`` is unused)."""

    def _second_moment(self, v: FloatArray, delta_squared: FloatArray) -> FloatArray:
        return v + delta_squared
