"""From a job's ``StrategySpec`` (name + numeric options) to a :mod:`fedbus.aggregation` strategy.

Options per strategy (anything else is ignored with a warning):

===============  =========================================================================
fedavg           none
fedprox          ``proximal_mu`` (used by the trainers; the server does plain FedAvg)
fedavgm          ``server_learning_rate`` (1.0), ``server_momentum`` (0.9)
fedadam/fedyogi  ``server_learning_rate`` or ``eta`` (0.1), ``beta_1`` (0.9), ``beta_2``
                 (0.99), ``tau`` (1e-3)
fedadagrad       as fedadam, ``beta_2`` unused
trimmed_mean     ``trim_ratio`` (0.1; ``trim_fraction`` accepted too)
median           none
krum             ``num_byzantine`` (0)
multi_krum       ``num_byzantine`` (0), ``num_selected`` (number of updates - num_byzantine)
===============  =========================================================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from fedbus.aggregation import (
    CoordinateMedian,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedYogi,
    IncompatibleUpdateError,
    Krum,
    MultiKrum,
    TrimmedMean,
)
from fedbus.aggregation import Strategy as AggregationStrategy
from fedbus.events import Strategy, StrategySpec
from fedbus_aggregator.central_dp import DP_OPTIONS

__all__ = ["KNOWN_OPTIONS", "build_strategy", "is_streaming"]

log = logging.getLogger(__name__)

_FEDOPT = {"server_learning_rate", "eta", "beta_1", "beta_2", "tau"}

KNOWN_OPTIONS: dict[Strategy, frozenset[str]] = {
    Strategy.FEDAVG: frozenset(),
    Strategy.FEDPROX: frozenset({"proximal_mu"}),
    Strategy.FEDAVGM: frozenset({"server_learning_rate", "server_momentum"}),
    Strategy.FEDADAM: frozenset(_FEDOPT),
    Strategy.FEDYOGI: frozenset(_FEDOPT),
    Strategy.FEDADAGRAD: frozenset(_FEDOPT),
    Strategy.TRIMMED_MEAN: frozenset({"trim_ratio", "trim_fraction"}),
    Strategy.MEDIAN: frozenset(),
    Strategy.KRUM: frozenset({"num_byzantine"}),
    Strategy.MULTI_KRUM: frozenset({"num_byzantine", "num_selected"}),
}
"""The options each strategy reads."""

Options = Mapping[str, float]


def build_strategy(spec: StrategySpec, *, num_updates: int) -> AggregationStrategy:
    """The server-side strategy for ``spec``, for a round of ``num_updates`` updates.

    Parameters
    ----------
    spec
        The job's strategy and options.
    num_updates
        How many updates will be combined (Multi-Krum's default selection needs it).

    Raises
    ------
    IncompatibleUpdateError
        When an option value is out of range (a non-retryable error).
    """
    unknown = sorted(set(spec.options) - KNOWN_OPTIONS[spec.name] - DP_OPTIONS)
    if unknown:
        log.warning("strategy %s ignores options %s", spec.name.value, unknown)
    return _BUILDERS[spec.name](spec.options, num_updates)


def is_streaming(strategy: AggregationStrategy) -> bool:
    """True when the strategy takes updates one at a time (the FedAvg family)."""
    return isinstance(strategy, FedAvg)


def _fedopt(cls: type[FedAdam | FedYogi | FedAdagrad]) -> Callable[[Options, int], FedAvg]:
    def build(o: Options, _n: int) -> FedAvg:
        return cls(
            learning_rate=o.get("server_learning_rate", o.get("eta", 0.1)),
            beta_1=o.get("beta_1", 0.9),
            beta_2=o.get("beta_2", 0.99),
            tau=o.get("tau", 1e-3),
        )

    return build


def _count(o: Options, name: str, default: int) -> int:
    value = o.get(name, float(default))
    if not float(value).is_integer():
        raise IncompatibleUpdateError(f"strategy option {name} must be a whole number")
    return int(value)


def _multi_krum(o: Options, n: int) -> AggregationStrategy:
    f = _count(o, "num_byzantine", 0)
    return MultiKrum(num_byzantine=f, num_selected=_count(o, "num_selected", max(1, n - f)))


_BUILDERS: dict[Strategy, Callable[[Options, int], AggregationStrategy]] = {
    Strategy.FEDAVG: lambda _o, _n: FedAvg(),
    Strategy.FEDPROX: lambda _o, _n: FedAvg(),
    Strategy.FEDAVGM: lambda o, _n: FedAvgM(
        learning_rate=o.get("server_learning_rate", 1.0),
        momentum=o.get("server_momentum", 0.9),
    ),
    Strategy.FEDADAM: _fedopt(FedAdam),
    Strategy.FEDYOGI: _fedopt(FedYogi),
    Strategy.FEDADAGRAD: _fedopt(FedAdagrad),
    Strategy.TRIMMED_MEAN: lambda o, _n: TrimmedMean(
        trim_fraction=o.get("trim_ratio", o.get("trim_fraction", 0.1))
    ),
    Strategy.MEDIAN: lambda _o, _n: CoordinateMedian(),
    Strategy.KRUM: lambda o, _n: Krum(num_byzantine=_count(o, "num_byzantine", 0)),
    Strategy.MULTI_KRUM: _multi_krum,
}
