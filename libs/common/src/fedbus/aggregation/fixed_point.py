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

Speed: numpy's float64 to int64 cast is slow, so a term below ``2**51`` in magnitude is
rounded by adding ``1.5 * 2**52`` (float64 then has a unit last place, and the addition
rounds half to even, as ``rint``) and read through its bit pattern, which is
``bits(1.5 * 2**52) + rint(term)``. The sums carry that constant once per add, modulo
``2**64``, and :meth:`FixedPointSum.mean` takes it out. Large tensors are cut into one
slice per core, added by threads (numpy releases the GIL): the slices are disjoint and
integers, so the sum is the same.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from fedbus.aggregation.errors import IncompatibleUpdateError
from fedbus.aggregation.helpers import check_same_layout
from fedbus.aggregation.updates import Model, NamedArrays

__all__ = ["FRACTION_BITS", "FixedPointSum"]

FRACTION_BITS = 32
"""Binary digits kept after the point: terms are rounded to multiples of ``2**-32``."""

_LIMIT = float(2**62)
"""Largest scaled magnitude the int64 sum may reach (a factor 2 below overflow)."""

_CHUNK = 1 << 18
"""Elements converted at a time (2 MiB of float64 scratch): measured fastest of 2**14 to
2**21 here; smaller chunks pay more per call than they gain from L2."""

_MAGIC = 1.5 * 2.0**52
"""``x + _MAGIC`` is ``_MAGIC + rint(x)`` exactly for ``|x| < 2**51``."""

_MAGIC_BITS = int(np.array(_MAGIC).view(np.int64))
"""The bit pattern of ``_MAGIC`` as an int64: what each term carries on top of its value."""

_WORKERS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))
"""Threads that add the slices of one large tensor: one per usable core, at most 4."""

_SPLIT = 1 << 19
"""Tensors from this many elements on are split across the threads (smaller: not worth it)."""

_Op = Callable[..., Any]
"""``np.add`` to add terms, ``np.subtract`` to take them out again."""


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
        # Each element holds its sum + self._adds * _MAGIC_BITS, modulo 2**64.
        self._sums: dict[str, npt.NDArray[np.int64]] = {}
        self._bounds: dict[str, float] = {}
        self._adds = 0
        self._scratch = [np.empty(_CHUNK, np.float64) for _ in range(_WORKERS)]

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
            for name in done:  # exact undo: the same integers, subtracted
                flat = np.ravel(np.asarray(arrays[name]))
                self._apply(0, self._sums[name].reshape(-1), flat, weight, np.subtract)
            self._bounds = before
            raise
        self._adds += 1

    def mean(self, *, divisor: float, dtypes: dict[str, np.dtype[Any]] | None = None) -> Model:
        """Each sum divided by ``divisor``, as float64 or as ``dtypes`` names.

        The division is done once, in float64, from the exact integer sum: the same sum
        always gives the same bytes.
        """
        # int64 arithmetic wraps modulo 2**64: taking the carried constants out is exact.
        carried = np.int64((self._adds * _MAGIC_BITS + 2**63) % 2**64 - 2**63)
        out: Model = {}
        for name, total in self._sums.items():
            values = (total - carried).astype(np.float64) / (divisor * 2.0**FRACTION_BITS)
            dtype = (dtypes or {}).get(name, np.dtype(np.float64))
            out[name] = values.astype(dtype, copy=False)
        return out

    def _add_checked(self, name: str, array: npt.NDArray[Any], weight: int, who: str) -> float:
        """``sum += rint(weight * array * 2**32)``, each chunk checked first; the new bound.

        On an error nothing of ``array`` is left in the sum.
        """
        if array.dtype.kind not in "fiub":
            raise IncompatibleUpdateError(f"{who}: cannot add {array.dtype} values to {name!r}")
        total, values, bound = self._sums[name].reshape(-1), array.reshape(-1), self._bounds[name]
        cuts = _cuts(values.size)
        spans = [(total[a:b], values[a:b]) for a, b in itertools.pairwise(cuts)]
        if len(spans) == 1:
            results = [self._add_span(0, total, values, weight, bound)]
        else:
            results = list(
                _pool().map(
                    lambda k: self._add_span(k, *spans[k], weight, bound), range(len(spans))
                )
            )
        refused = [peak for peak, added in results if not added]
        if refused:
            for k, ((part_total, part), (_, added)) in enumerate(zip(spans, results, strict=True)):
                if added:  # a refused slice has already taken its own chunks out
                    self._apply(k, part_total, part, weight, np.subtract)
            raise IncompatibleUpdateError(
                f"{who}: tensor {name!r} has a value of magnitude {refused[0]:.3g}: not "
                "finite, or too large for the fixed-point sum (sum of |weight x value| < 2**30)"
            )
        worst = max(peak for peak, _ in results)
        return bound + worst * abs(weight) * 2.0**FRACTION_BITS + 1.0

    def _add_span(
        self,
        k: int,
        total: npt.NDArray[np.int64],
        values: npt.NDArray[Any],
        weight: int,
        bound: float,
    ) -> tuple[float, bool]:
        """Add one slice, chunk by chunk with scratch ``k``: (largest ``|value|``, added).

        A chunk past the bound is not added, the chunks before it are taken out again,
        and its magnitude comes back with ``False``.
        """
        scale, worst = abs(weight) * 2.0**FRACTION_BITS, 0.0
        for start in range(0, values.size, _CHUNK):
            part = values[start : start + _CHUNK]
            peak = max(abs(float(part.max())), abs(float(part.min())))
            if not bound + peak * scale + 1.0 <= _LIMIT:  # NaN fails this as inf does
                self._apply(k, total[:start], values[:start], weight, np.subtract)
                return peak, False
            _term(part, weight, peak * scale, self._scratch[k], total[start:], np.add)
            worst = max(worst, peak)
        return worst, True

    def _apply(
        self, k: int, total: npt.NDArray[np.int64], values: npt.NDArray[Any], weight: int, op: _Op
    ) -> None:
        """``total = op(total, rint(weight * values * 2**32) + _MAGIC_BITS)``, unchecked."""
        scale = abs(weight) * 2.0**FRACTION_BITS
        for start in range(0, values.size, _CHUNK):
            part = values[start : start + _CHUNK]
            peak = max(abs(float(part.max())), abs(float(part.min())))
            _term(part, weight, peak * scale, self._scratch[k], total[start:], op)


def _term(
    part: npt.NDArray[Any],
    weight: int,
    peak: float,
    scratch: npt.NDArray[np.float64],
    total: npt.NDArray[np.int64],
    op: _Op,
) -> None:
    """``total[:n] = op(total[:n], rint(weight * part * 2**32) + _MAGIC_BITS)``, one chunk.

    ``peak`` bounds ``|weight * part * 2**32|``: below ``2**51`` the magic number rounds,
    else ``rint`` and numpy's cast to int64 (the same integers, several times slower).
    """
    n = part.size
    real, total = scratch[:n], total[:n]
    np.copyto(real, part)  # a plain cast, then multiply: faster than a casting multiply
    np.multiply(real, weight * 2.0**FRACTION_BITS, out=real)
    if peak < 2.0**51:
        np.add(real, _MAGIC, out=real)  # the one rounding of this term
        op(total, real.view(np.int64), out=total)
    else:
        whole = np.rint(real, out=real).astype(np.int64)  # the one rounding of this term
        op(total, whole + np.int64(_MAGIC_BITS), out=total)


def _cuts(size: int) -> list[int]:
    """Bounds of the slices a tensor of ``size`` elements is added in, one per thread."""
    parts = _WORKERS if size >= _SPLIT else 1
    step = -(-size // parts)
    return [min(i * step, size) for i in range(parts)] + [size]


@cache
def _pool() -> ThreadPoolExecutor:
    """The threads shared by every sum (numpy releases the GIL while they work)."""
    return ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="fixed-point")
