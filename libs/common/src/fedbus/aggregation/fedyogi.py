"""FedYogi (Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2).

Yogi (Zaheer et al. 2018) changes v additively, by at most ``(1 - beta_2) * delta**2``
per round, which keeps the effective learning rate from growing abruptly.
"""

from __future__ import annotations

import numpy as np

from fedbus.aggregation._fedopt import AdaptiveFedOpt
from fedbus.aggregation.updates import FloatArray

__all__ = ["FedYogi"]


class FedYogi(AdaptiveFedOpt):
    """Yogi on the server: ``v_t = v_{t-1} - (1 - beta_2) * d2 * sign(v_{t-1} - d2)``."""

    def _second_moment(self, v: FloatArray, delta_squared: FloatArray) -> FloatArray:
        return v - (1 - self.beta_2) * delta_squared * np.sign(v - delta_squared)
