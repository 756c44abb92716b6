"""Gaussian noise for differential privacy, from the operating system's CSPRNG.

Noise that anyone can re-draw protects nothing: a generator seeded from the job's seed
(which the job's submitter, and every event reader, knows) lets them subtract the noise
and read the clipped sum. So production noise comes from ``os.urandom`` (the kernel's
cryptographically secure generator) through the Box-Muller transform, fresh for every
draw; a seeded :class:`numpy.random.Generator` is accepted only so that tests can repeat
a draw.

Box-Muller in float64 is the textbook sampler; it does not address floating-point
attacks on the low bits of a noisy value (Mironov 2012; Jin et al. 2022), nor does any
other Gaussian sampler here: the same caveat Opacus states for its non-secure mode.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["gaussian", "secure_standard_normal"]

_TWO_PI = 2.0 * math.pi


def secure_standard_normal(shape: tuple[int, ...]) -> npt.NDArray[np.float64]:
    """Independent N(0, 1) draws of ``shape`` from ``os.urandom`` (Box-Muller, float64).

    Examples
    --------
    >>> secure_standard_normal((2, 3)).shape
    (2, 3)
    """
    count = math.prod(shape)
    pairs = (count + 1) // 2
    words = np.frombuffer(os.urandom(16 * pairs), dtype=np.uint64).reshape(2, pairs)
    # 53 random bits each: u1 in (0, 1] keeps log() finite, u2 in [0, 1).
    u1 = ((words[0] >> np.uint64(11)) + 1).astype(np.float64) * 2.0**-53
    angle = (words[1] >> np.uint64(11)).astype(np.float64) * (2.0**-53 * _TWO_PI)
    radius = np.sqrt(-2.0 * np.log(u1))
    draws = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])
    return draws[:count].reshape(shape)


def gaussian(
    shape: tuple[int, ...],
    *,
    std: float,
    dtype: np.dtype[Any],
    rng: np.random.Generator | None = None,
) -> npt.NDArray[Any]:
    """N(0, std^2) noise of ``shape`` in ``dtype`` (float32 or float64).

    Parameters
    ----------
    rng
        None in production: the draw comes from :func:`secure_standard_normal`. Tests
        pass a seeded generator to repeat a draw.
    """
    if std == 0:
        return np.zeros(shape, dtype=dtype)
    if rng is None:
        return (std * secure_standard_normal(shape)).astype(dtype, copy=False)
    kind = np.float32 if dtype == np.float32 else np.float64
    return (std * rng.standard_normal(shape, dtype=kind)).astype(dtype, copy=False)
