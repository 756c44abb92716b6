"""From a job's ``StrategySpec`` (name + numeric options) to a :mod:`fedbus.aggregation` strategy.

The options each strategy reads, their defaults and ranges are one table in libs/common:
:data:`fedbus.jobspec.STRATEGY_OPTIONS` (its module docstring shows it). The gateway and
orchestration refuse a spec that breaks it; here an option the strategy does not read is
ignored with a warning, and a value out of range is an ``IncompatibleUpdateError``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

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
from fedbus.jobspec import DP_OPTIONS, KNOWN_OPTIONS, option_value

__all__ = ["KNOWN_OPTIONS", "build_strategy", "is_streaming"]

log = logging.getLogger(__name__)


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
    return _BUILDERS[spec.name](spec, num_updates)


def is_streaming(strategy: AggregationStrategy) -> bool:
    """True when the strategy takes updates one at a time (the FedAvg family)."""
    return isinstance(strategy, FedAvg)


def _value(spec: StrategySpec, name: str) -> float:
    value = option_value(spec, name)
    if value is None:
        raise IncompatibleUpdateError(f"strategy {spec.name.value} needs option {name}")
    return value


def _fedopt(cls: type[FedAdam | FedYogi | FedAdagrad]) -> Callable[[StrategySpec, int], FedAvg]:
    def build(spec: StrategySpec, _n: int) -> FedAvg:
        return cls(
            learning_rate=_value(spec, "server_learning_rate"),
            beta_1=_value(spec, "beta_1"),
            beta_2=_value(spec, "beta_2"),
            tau=_value(spec, "tau"),
        )

    return build


def _count(spec: StrategySpec, name: str) -> int | None:
    value = option_value(spec, name)
    if value is None:
        return None  # derived from the round (Multi-Krum's selection)
    if not float(value).is_integer():
        raise IncompatibleUpdateError(f"strategy option {name} must be a whole number")
    return int(value)


def _krum(spec: StrategySpec, _n: int) -> AggregationStrategy:
    return Krum(num_byzantine=_count(spec, "num_byzantine") or 0)


def _multi_krum(spec: StrategySpec, n: int) -> AggregationStrategy:
    f = _count(spec, "num_byzantine") or 0
    selected = _count(spec, "num_selected")
    return MultiKrum(num_byzantine=f, num_selected=max(1, n - f) if selected is None else selected)


_BUILDERS: dict[Strategy, Callable[[StrategySpec, int], AggregationStrategy]] = {
    Strategy.FEDAVG: lambda _s, _n: FedAvg(),
    Strategy.FEDPROX: lambda _s, _n: FedAvg(),  # proximal_mu is the trainers' option
    Strategy.FEDAVGM: lambda s, _n: FedAvgM(
        learning_rate=_value(s, "server_learning_rate"), momentum=_value(s, "server_momentum")
    ),
    Strategy.FEDADAM: _fedopt(FedAdam),
    Strategy.FEDYOGI: _fedopt(FedYogi),
    Strategy.FEDADAGRAD: _fedopt(FedAdagrad),
    Strategy.TRIMMED_MEAN: lambda s, _n: TrimmedMean(trim_fraction=_value(s, "trim_ratio")),
    Strategy.MEDIAN: lambda _s, _n: CoordinateMedian(),
    Strategy.KRUM: _krum,
    Strategy.MULTI_KRUM: _multi_krum,
}
