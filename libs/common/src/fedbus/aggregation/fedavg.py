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

from fedbus.aggregation.errors import EmptyRoundError, IncompatibleUpdateError
from fedbus.aggregation.fixed_point import FixedPointSum
from fedbus.aggregation.strategy import Strategy
from fedbus.aggregation.updates import ClientUpdate, Model

__all__ = ["FedAvg", "FedAvgAccumulator"]

logger = logging.getLogger(__name__)


class FedAvgAccumulator:
    """Sample-weighted mean of deltas, added one update at a time, in any order.

    Memory stays at one model-sized sum, whatever the number of clients: an update
    can be released as soon as :meth:`add` returns. The sum is a
    :class:`~fedbus.aggregation.fixed_point.FixedPointSum` (int64 fixed point): the
    result is the same bytes whatever order the same updates arrive in, and within
    ``1.2e-10`` of the exact weighted mean.

    Examples
    --------
    >>> acc = FedAvgAccumulator()
    >>> acc.add(ClientUpdate("a", {"w": np.array([1.0, 1.0])}, num_samples=1))
    >>> acc.add(ClientUpdate("b", {"w": np.array([4.0, 0.0])}, num_samples=3))
    >>> acc.result()["w"].tolist()
    [3.25, 0.25]
    """

    def __init__(self) -> None:
        self._sum = FixedPointSum()
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
            If the client already contributed, ``num_samples`` is not positive, the
            tensors differ in names or shapes from the first update's, or a value is
            not a finite real number or too large to sum exactly.
        """
        if update.client_id in self._clients:
            raise IncompatibleUpdateError(f"client {update.client_id} already added")
        if update.num_samples <= 0:
            raise IncompatibleUpdateError(f"client {update.client_id}: num_samples <= 0")
        self._sum.add(update.delta, weight=update.num_samples, who=f"client {update.client_id}")
        if not self._dtypes:
            self._dtypes = {n: np.asarray(a).dtype for n, a in update.delta.items()}
        self._clients.add(update.client_id)
        self._total_samples += update.num_samples

    def result(self) -> Model:
        """The weighted mean delta so far, in the first update's dtypes."""
        if not self._clients:
            raise EmptyRoundError("no updates were added")
        return self._sum.mean(divisor=self._total_samples, dtypes=self._dtypes)


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
