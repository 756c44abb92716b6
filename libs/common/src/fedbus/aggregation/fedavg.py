"""Federated Averaging with streaming accumulation.

McMahan, Moore, Ramage, Hampson and Aguera y Arcas (2017), "Communication-Efficient
Learning of Deep Networks from Decentralized Data", AISTATS: the new global model is
the global model plus the mean of the client deltas weighted by sample counts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

# Imported here, not at the first round: scipy.linalg takes 0.3 s to import.
from scipy.linalg.blas import daxpy, saxpy  # type: ignore[import-untyped]

from fedbus.aggregation.errors import EmptyRoundError, IncompatibleUpdateError
from fedbus.aggregation.helpers import check_same_layout
from fedbus.aggregation.strategy import Strategy
from fedbus.aggregation.updates import ClientUpdate, Model

__all__ = ["FedAvg", "FedAvgAccumulator"]

logger = logging.getLogger(__name__)


class FedAvgAccumulator:
    """Sample-weighted mean of deltas, added one update at a time.

    Memory stays at one model-sized sum, whatever the number of clients: an update
    can be released as soon as :meth:`add` returns. The sum is kept in each
    tensor's dtype (at least float32).

    Adding ``w * delta`` is one pass over the update and the sum: BLAS ``axpy``
    (``sum += w * delta``, multithreaded, no temporary) for float32 and float64 sums;
    other dtypes go through numpy. Each update is read from memory exactly once.

    Examples
    --------
    >>> acc = FedAvgAccumulator()
    >>> acc.add(ClientUpdate("a", {"w": np.array([1.0, 1.0])}, num_samples=1))
    >>> acc.add(ClientUpdate("b", {"w": np.array([4.0, 0.0])}, num_samples=3))
    >>> acc.result()["w"].tolist()
    [3.25, 0.25]
    """

    def __init__(self) -> None:
        self._sums: Model = {}
        self._dtypes: dict[str, np.dtype[Any]] = {}
        self._clients: set[str] = set()
        self._total_samples = 0

    @property
    def num_updates(self) -> int:
        """Number of updates added."""
        return len(self._clients)

    @property
    def total_samples(self) -> int:
        """Sum of the added updates' sample counts."""
        return self._total_samples

    @property
    def client_ids(self) -> frozenset[str]:
        """Clients whose update was added."""
        return frozenset(self._clients)

    def add(self, update: ClientUpdate) -> None:
        """Add ``num_samples * delta`` to the running sum.

        Raises
        ------
        IncompatibleUpdateError
            If the client already contributed, ``num_samples`` is not positive, or
            the tensors differ in names or shapes from the first update's.
        """
        if update.client_id in self._clients:
            raise IncompatibleUpdateError(f"client {update.client_id} already added")
        if update.num_samples <= 0:
            raise IncompatibleUpdateError(f"client {update.client_id}: num_samples <= 0")
        if not self._sums:
            self._start(update)
        check_same_layout(self._sums, update.delta, who=f"client {update.client_id}")
        weight = float(update.num_samples)
        for name, total in self._sums.items():
            _add_scaled(total, weight, update.delta[name])
        self._clients.add(update.client_id)
        self._total_samples += update.num_samples

    def result(self) -> Model:
        """The weighted mean delta so far, in the first update's dtypes."""
        if not self._clients:
            raise EmptyRoundError("no updates were added")
        factor = 1.0 / self._total_samples
        return {
            name: (total * total.dtype.type(factor)).astype(self._dtypes[name], copy=False)
            for name, total in self._sums.items()
        }

    def _start(self, update: ClientUpdate) -> None:
        for name, array in update.delta.items():
            dtype = np.result_type(array.dtype, np.float32)
            self._sums[name] = np.zeros(np.shape(array), dtype=dtype)
            self._dtypes[name] = np.asarray(array).dtype


def _add_scaled(total: np.ndarray, weight: float, delta: np.ndarray) -> None:
    """``total += weight * delta`` in place, in one pass where BLAS can do it."""
    values = np.asarray(delta)
    axpy = _AXPY.get(total.dtype) if values.dtype == total.dtype and total.size else None
    if axpy is not None:
        # y is updated in place ("z ... with y storage"): the sum is our own contiguous array
        axpy(np.ascontiguousarray(values).reshape(-1), total.reshape(-1), a=weight)
        return
    if not np.can_cast(values.dtype, total.dtype, "same_kind"):
        raise IncompatibleUpdateError(f"cannot add {values.dtype} values to a {total.dtype} sum")
    total += total.dtype.type(weight) * values.astype(total.dtype, copy=False)


_AXPY: dict[np.dtype[Any], Any] = {np.dtype(np.float32): saxpy, np.dtype(np.float64): daxpy}


class FedAvg(Strategy):
    """Federated Averaging (McMahan et al. 2017): add the sample-weighted mean delta.

    For streaming, build an accumulator with :meth:`accumulator`, :meth:`~FedAvgAccumulator.add`
    updates as they arrive, then call :meth:`apply` with its
    :meth:`~FedAvgAccumulator.result`.
    """

    def accumulator(self) -> FedAvgAccumulator:
        """A fresh streaming accumulator for one round."""
        return FedAvgAccumulator()

    def combine(self, updates: Sequence[ClientUpdate]) -> Model:
        """Sample-weighted mean of the deltas."""
        accumulator = self.accumulator()
        for update in updates:
            accumulator.add(update)
        return accumulator.result()
