"""L2 clipping and Gaussian noise for central DP (DP-FedAvg).

McMahan, Ramage, Talwar and Zhang (2018), "Learning Differentially Private Recurrent
Language Models", ICLR: each client's delta is clipped to L2 norm C over all its
tensors together, the clipped deltas are summed and Gaussian noise of standard
deviation ``noise_multiplier * C`` is added to the sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedbus.aggregation.errors import IncompatibleUpdateError
from fedbus.aggregation.fixed_point import FixedPointSum
from fedbus.aggregation.helpers import l2_norm
from fedbus.aggregation.noise import gaussian
from fedbus.aggregation.updates import ClientUpdate, Model, NamedArrays

__all__ = ["NoisyMean", "clip_update", "noisy_clipped_mean"]


def clip_update(delta: NamedArrays, *, clipping_norm: float) -> tuple[Model, float]:
    """Scale ``delta`` so that its L2 norm (all tensors together) is at most C.

    Returns
    -------
    tuple
        The clipped delta (a scaled copy, dtypes kept) and the norm *before*
        clipping. A delta already within the bound is copied unchanged. The
        bound holds up to the rounding of the tensors' dtype.
    """
    if not clipping_norm > 0:
        raise IncompatibleUpdateError(f"clipping_norm must be > 0, got {clipping_norm}")
    norm = l2_norm(delta)
    scale = min(1.0, clipping_norm / norm) if norm > 0 else 1.0
    clipped = {
        name: (np.asarray(array) * scale).astype(np.asarray(array).dtype, copy=False)
        for name, array in delta.items()
    }
    return clipped, norm


@dataclass(frozen=True, slots=True)
class NoisyMean:
    """Result of :func:`noisy_clipped_mean`: the mean and the pre-clipping norms."""

    delta: Model
    norms: tuple[float, ...]


def noisy_clipped_mean(
    updates: Sequence[ClientUpdate],
    *,
    clipping_norm: float,
    noise_std: float,
    denominator: int,
    rng: np.random.Generator | None = None,
) -> NoisyMean:
    """``(sum of clipped deltas + N(0, noise_std^2 I)) / denominator``.

    The denominator is fixed in advance (the expected number of clients), never
    the number that showed up: dividing by a data-dependent count would change the
    sensitivity the noise was calibrated for. The clipped deltas are summed in fixed
    point (:class:`~fedbus.aggregation.fixed_point.FixedPointSum`), so the sum is the
    same bytes in any order; the noise comes from the OS's CSPRNG unless a test
    passes a seeded ``rng`` (:func:`~fedbus.aggregation.noise.gaussian`).
    """
    total = FixedPointSum()
    dtypes: dict[str, np.dtype[Any]] = {}
    norms = []
    for update in updates:
        clipped, norm = clip_update(update.delta, clipping_norm=clipping_norm)
        norms.append(norm)
        total.add(clipped, weight=1, who=f"client {update.client_id}")
        dtypes = dtypes or {n: np.result_type(a.dtype, np.float32) for n, a in clipped.items()}
    sums = total.mean(divisor=1, dtypes=dtypes)
    delta = {
        name: ((array + gaussian(array.shape, std=noise_std, dtype=array.dtype, rng=rng))
               / denominator).astype(array.dtype)
        for name, array in sums.items()
    }  # fmt: skip
    return NoisyMean(delta=delta, norms=tuple(norms))
