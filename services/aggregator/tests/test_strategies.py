"""StrategySpec -> aggregation strategy, with options."""

from __future__ import annotations

import numpy as np
import pytest

from fedbus import jobspec
from fedbus.aggregation import (
    ClientUpdate,
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
from fedbus.events import Strategy, StrategySpec
from fedbus.jobspec import STRATEGY_OPTIONS
from fedbus_aggregator.strategies import KNOWN_OPTIONS, build_strategy, is_streaming


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        (Strategy.FEDAVG, FedAvg),
        (Strategy.FEDPROX, FedAvg),
        (Strategy.FEDAVGM, FedAvgM),
        (Strategy.FEDADAM, FedAdam),
        (Strategy.FEDYOGI, FedYogi),
        (Strategy.FEDADAGRAD, FedAdagrad),
        (Strategy.TRIMMED_MEAN, TrimmedMean),
        (Strategy.MEDIAN, CoordinateMedian),
        (Strategy.KRUM, Krum),
        (Strategy.MULTI_KRUM, MultiKrum),
    ],
)
def test_every_strategy_name_maps_to_its_class(name: Strategy, cls: type) -> None:
    strategy = build_strategy(StrategySpec(name=name), num_updates=5)

    assert type(strategy) is cls


def test_every_strategy_declares_its_options() -> None:
    assert set(KNOWN_OPTIONS) == set(Strategy)


def test_options_reach_the_strategy() -> None:
    trimmed = build_strategy(
        StrategySpec(name=Strategy.TRIMMED_MEAN, options={"trim_ratio": 0.2}), num_updates=5
    )
    adam = build_strategy(
        StrategySpec(
            name=Strategy.FEDADAM, options={"server_learning_rate": 0.5, "beta_1": 0.8, "tau": 0.01}
        ),
        num_updates=5,
    )
    momentum = build_strategy(
        StrategySpec(name=Strategy.FEDAVGM, options={"server_momentum": 0.5}), num_updates=5
    )
    krum = build_strategy(
        StrategySpec(name=Strategy.MULTI_KRUM, options={"num_byzantine": 1}), num_updates=6
    )

    assert isinstance(trimmed, TrimmedMean)
    assert trimmed.trim_fraction == 0.2
    assert isinstance(adam, FedAdam)
    assert (adam.learning_rate, adam.beta_1, adam.tau) == (0.5, 0.8, 0.01)
    assert isinstance(momentum, FedAvgM)
    assert momentum.momentum == 0.5
    assert isinstance(krum, MultiKrum)
    assert (krum.num_byzantine, krum.num_selected) == (1, 5)


def test_fedprox_aggregates_like_fedavg_on_the_server() -> None:
    spec = StrategySpec(name=Strategy.FEDPROX, options={"proximal_mu": 0.1})
    updates = [
        ClientUpdate("a", {"w": np.array([1.0], np.float32)}, 1),
        ClientUpdate("b", {"w": np.array([4.0], np.float32)}, 3),
    ]

    model = build_strategy(spec, num_updates=2).aggregate(
        global_model={"w": np.array([0.0], np.float32)}, updates=updates
    )

    assert model["w"].tolist() == [3.25]


def test_streaming_is_the_fedavg_family_only() -> None:
    assert is_streaming(build_strategy(StrategySpec(name=Strategy.FEDYOGI), num_updates=3))
    assert not is_streaming(build_strategy(StrategySpec(name=Strategy.MEDIAN), num_updates=3))


@pytest.mark.parametrize(
    "spec",
    [
        StrategySpec(name=Strategy.TRIMMED_MEAN, options={"trim_ratio": 0.7}),
        StrategySpec(name=Strategy.FEDAVGM, options={"server_momentum": 1.5}),
        StrategySpec(name=Strategy.KRUM, options={"num_byzantine": 1.5}),
    ],
)
def test_bad_option_values_are_refused(spec: StrategySpec) -> None:
    with pytest.raises(IncompatibleUpdateError):
        build_strategy(spec, num_updates=5)


def test_absent_options_take_the_shared_tables_defaults_and_aliases() -> None:
    def default(strategy: Strategy, name: str) -> float | None:
        return next(o.default for o in STRATEGY_OPTIONS[strategy] if o.name == name)

    momentum = build_strategy(StrategySpec(name=Strategy.FEDAVGM), num_updates=5)
    adam = build_strategy(StrategySpec(name=Strategy.FEDADAM, options={"eta": 0.3}), num_updates=5)
    trimmed = build_strategy(
        StrategySpec(name=Strategy.TRIMMED_MEAN, options={"trim_fraction": 0.2}), num_updates=5
    )

    assert isinstance(momentum, FedAvgM)
    assert momentum.momentum == default(Strategy.FEDAVGM, "server_momentum")
    assert isinstance(adam, FedAdam)
    assert (adam.learning_rate, adam.tau) == (0.3, default(Strategy.FEDADAM, "tau"))
    assert isinstance(trimmed, TrimmedMean)
    assert trimmed.trim_fraction == 0.2
    assert KNOWN_OPTIONS is jobspec.KNOWN_OPTIONS  # one table, not a copy
