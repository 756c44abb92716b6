"""An order-independent weighted sum of arrays: int64 fixed point, one update at a time.

Float addition is not associative, so a running float sum of client updates depends on
the order in which they arrive: two runs of the same job would build models that differ
in their last bits, and the difference grows over the rounds. Here each term
``weight * value`` is rounded once, on its own, to a fixed grid of ``2**-FRACTION_BITS``
and added as an integer. Integer addition is exact and associative, so the sum (and the
mean divided from it once at the end) is the same bytes for any order of the same terms,
while each update is still added as it comes and can then be released.

Each term ``weight * value`` (exact in float64 for a float32 value and an integer weight
below ``2**29``) is rounded to the grid once, on its own: ``rint(weight * value * 2**32)``.
The grid is fixed, not chosen from the data (a scale taken from whichever update came
first would bring the order back in), so the mean is within
``2**-33 * n / sum(weights) <= 1.2e-10`` of the exact weighted mean: finer than a float32
model's resolution (its weights' ulp is 1.2e-10 at 0.001). The sum of
``|weight * value|`` may reach ``2**30`` per element (a million samples times deltas of
up to 1,000); every add checks that bound and refuses an update past it, so the integers
never overflow.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from fedbus.aggregation.errors import IncompatibleUpdateError
from fedbus.aggregation.helpers import check_same_layout
from fedbus.aggregation.updates import FloatArray, Model, NamedArrays

__all__ = ["FRACTION_BITS", "FixedPointSum"]

FRACTION_BITS = 32
"""Binary digits kept after the point: terms are rounded to multiples of ``2**-32``."""

_LIMIT = float(2**62)
"""Largest scaled magnitude the int64 sum may reach (a factor 2 below overflow)."""

_CHUNK = 1 << 16
"""Elements converted at a time: the float64 and int64 scratch (512 KiB each) stay in cache."""


class FixedPointSum:
    """``sum(weight * arrays)`` per tensor name, exact on a ``2**-32`` grid, in any order.

    Examples
    --------
    >>> total = FixedPointSum()
    >>> total.add({"w": np.array([0.5, 1.0])}, weight=3, who="a")
    >>> total.add({"w": np.array([1.0, 0.0])}, weight=1, who="b")
    >>> total.mean(divisor=4)["w"].tolist()
    [0.625, 0.75]
    """

    def __init__(self) -> None:
        self._sums: dict[str, npt.NDArray[np.int64]] = {}
        self._bounds: dict[str, float] = {}
        self._scratch = (np.empty(_CHUNK, np.float64), np.empty(_CHUNK, np.int64))

    def add(self, arrays: NamedArrays, *, weight: int, who: str) -> None:
        """Add ``weight * arrays`` (same names and shapes as the first add's).

        Raises
        ------
        IncompatibleUpdateError
            If a value is not a real number or not finite, or the sum would leave the
            fixed-point range; the sum is then left as it was before this call.
        """
        if self._sums:
            check_same_layout(self._sums, arrays, who=who)
        else:
            self._sums = {n: np.zeros(np.shape(a), np.int64) for n, a in arrays.items()}
            self._bounds = dict.fromkeys(arrays, 0.0)
        before = dict(self._bounds)
        done: list[str] = []
        try:
            for name, array in arrays.items():
                self._bounds[name] = self._add_checked(name, np.asarray(array), weight, who)
                done.append(name)
        except IncompatibleUpdateError:
            for name in done:  # exact undo: rint(-x) == -rint(x), and integers add exactly
                self._add_raw(self._sums[name].reshape(-1), np.ravel(arrays[name]), -weight)
            self._bounds = before
            raise

    def mean(self, *, divisor: float, dtypes: dict[str, np.dtype[Any]] | None = None) -> Model:
        """Each sum divided by ``divisor``, as float64 or as ``dtypes`` names.

        The division is done once, in float64, from the exact integer sum: the same sum
        always gives the same bytes.
        """
        out: Model = {}
        for name, total in self._sums.items():
            values = total.astype(np.float64) / (divisor * 2.0**FRACTION_BITS)
            dtype = (dtypes or {}).get(name, np.dtype(np.float64))
            out[name] = values.astype(dtype, copy=False)
        return out

    def _add_checked(self, name: str, array: npt.NDArray[Any], weight: int, who: str) -> float:
        """``sum += rint(weight * array * 2**32)``, each chunk checked first; the new bound.

        On an error the chunks of ``array`` already added are taken out again.
        """
        if array.dtype.kind not in "fiub":
            raise IncompatibleUpdateError(f"{who}: cannot add {array.dtype} values to {name!r}")
        total, values, bound = self._sums[name].reshape(-1), array.reshape(-1), self._bounds[name]
        scale, worst = abs(weight) * 2.0**FRACTION_BITS, 0.0
        for start in range(0, values.size, _CHUNK):
            part = values[start : start + _CHUNK]
            peak = max(abs(float(part.max())), abs(float(part.min())))
            if not bound + peak * scale + 1.0 <= _LIMIT:  # NaN fails this as inf does
                self._add_raw(total[:start], values[:start], -weight)
                raise IncompatibleUpdateError(
                    f"{who}: tensor {name!r} has a value of magnitude {peak:.3g}: not finite, "
                    "or too large for the fixed-point sum (sum of |weight x value| < 2**30)"
                )
            self._add_raw(total[start : start + _CHUNK], part, weight)
            worst = max(worst, peak)
        return bound + worst * scale + 1.0

    def _add_raw(self, total: npt.NDArray[np.int64], values: FloatArray, weight: int) -> None:
        """``total += rint(weight * values * 2**32)`` through cache-sized scratch."""
        real, whole = self._scratch
        scale = weight * 2.0**FRACTION_BITS
        for start in range(0, values.size, _CHUNK):
            part = values[start : start + _CHUNK]
            n = part.size
            np.multiply(part, scale, out=real[:n], dtype=np.float64)
            np.rint(real[:n], out=real[:n])  # the one rounding of this term
            np.copyto(whole[:n], real[:n], casting="unsafe")
            np.add(total[start : start + n], whole[:n], out=total[start : start + n])
