"""Quantization and arithmetic modulo ``2**bits``, vectorised with numpy.

Values live in uint32 arrays. uint32 arithmetic wraps modulo ``2**32``, and ``2**bits``
divides ``2**32`` for ``bits <= 32``, so adding and subtracting masks in plain uint32 and
reducing with ``& (2**bits - 1)`` once at the end gives exactly the residue modulo
``2**bits``: no wider accumulator and no per-step reduction are needed.

A client clips each coordinate to ``[-c, c]`` and maps it to ``[0, q]`` with stochastic
rounding (unbiased: the expected integer is the exact scaled value). With
``q = (2**bits - 1) // n`` the sum of any ``m <= n`` quantized vectors stays below the
modulus, so the unmasked sum is the true integer sum and
``sum * 2c / q - m * c`` is the sum of the (quantized) clipped updates.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["dequantize_sum", "quantize", "reduce_mod"]

UIntArray = npt.NDArray[np.uint32]


def quantize(
    update: npt.ArrayLike,
    *,
    clipping_range: float,
    levels: int,
    rng: np.random.Generator,
    weight: float = 1.0,
) -> UIntArray:
    """Clip to ``[-c, c]``, multiply by ``weight``, scale to ``[0, levels]``, round.

    A weight in ``(0, 1]`` keeps the weighted value within ``[-c, c]``: the masked sum
    is then ``sum(weight_i * clip(update_i))`` (FedAvg weights divided by their maximum).

    Raises
    ------
    ValueError
        If the update holds a value that is not finite, or the weight is not in (0, 1].
    """
    values = np.asarray(update, dtype=np.float64).ravel()
    if not np.isfinite(values).all():
        raise ValueError("the update holds NaN or infinite values")
    if not 0 < weight <= 1:
        raise ValueError(f"weight must be in (0, 1], got {weight}")
    scaled = np.clip(values, -clipping_range, clipping_range)
    if weight != 1:
        scaled *= weight
    scaled += clipping_range
    scaled *= levels / (2.0 * clipping_range)
    floor = np.floor(scaled)
    scaled -= floor  # the fractional part: the chance of rounding up
    floor += rng.random(values.size) < scaled
    np.minimum(floor, levels, out=floor)  # rounding error at the top end
    return floor.astype(np.uint32)


def dequantize_sum(
    total: npt.NDArray[np.uint32], *, count: int, clipping_range: float, levels: int
) -> npt.NDArray[np.float64]:
    """The float sum of ``count`` clipped updates from their quantized integer sum."""
    step = 2.0 * clipping_range / levels
    return total.astype(np.float64) * step - count * clipping_range


def reduce_mod(values: UIntArray, *, bits: int) -> UIntArray:
    """``values mod 2**bits``, in place."""
    if bits < 32:
        np.bitwise_and(values, np.uint32((1 << bits) - 1), out=values)
    return values
