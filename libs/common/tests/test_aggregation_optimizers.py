"""Server-side optimizers (Reddi et al. 2021): FedAvgM, FedAdam, FedYogi, FedAdagrad."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedbus.aggregation import (
    ClientUpdate,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedYogi,
    IncompatibleUpdateError,
    Strategy,
)

GLOBAL = {"w": np.array([1.0, -2.0], dtype=np.float32)}


def round_of(*values: float) -> list[ClientUpdate]:
    return [
        ClientUpdate(f"c{i}", {"w": np.full(2, v, dtype=np.float32)}, 1)
        for i, v in enumerate(values)
    ]


def test_fedavgm_without_momentum_is_fedavg() -> None:
    updates = round_of(0.5, 1.5)

    momentum = FedAvgM(learning_rate=1.0, momentum=0.0).aggregate(
        global_model=GLOBAL, updates=updates
    )
    plain = FedAvg().aggregate(global_model=GLOBAL, updates=updates)

    np.testing.assert_array_equal(momentum["w"], plain["w"])


def test_fedavgm_accumulates_velocity() -> None:
    strategy = FedAvgM(learning_rate=0.5, momentum=0.9)

    first = strategy.aggregate(global_model=GLOBAL, updates=round_of(1.0))
    second = strategy.aggregate(global_model=first, updates=round_of(1.0))

    # u1 = 1, x1 = x0 + 0.5; u2 = 0.9 + 1 = 1.9, x2 = x1 + 0.95
    np.testing.assert_allclose(second["w"], GLOBAL["w"] + 0.5 + 0.95, rtol=1e-6)


@pytest.mark.parametrize(
    ("strategy_type", "v1"),
    [
        (FedAdam, 0.99 * 1e-6 + 0.01 * 1.0),  # beta_2 v0 + (1 - beta_2) d^2
        (FedYogi, 1e-6 + 0.01 * 1.0),  # v0 - (1 - beta_2) d^2 sign(v0 - d^2)
        (FedAdagrad, 1e-6 + 1.0),  # v0 + d^2
    ],
)
def test_first_adaptive_step_matches_algorithm_2(strategy_type: type[FedAdam], v1: float) -> None:
    strategy = strategy_type(learning_rate=0.1, beta_1=0.9, beta_2=0.99, tau=1e-3)

    new = strategy.aggregate(global_model=GLOBAL, updates=round_of(1.0))

    m1 = 0.1 * 1.0  # (1 - beta_1) * delta
    step = 0.1 * m1 / (math.sqrt(v1) + 1e-3)
    np.testing.assert_allclose(new["w"], GLOBAL["w"] + step, rtol=1e-6)


@pytest.mark.parametrize("make", [FedAdam, FedYogi, FedAdagrad, FedAvgM])
def test_state_round_trip_continues_identically(make: type[Strategy]) -> None:
    original = make()
    after_one = original.aggregate(global_model=GLOBAL, updates=round_of(0.3, 0.7))
    restored = make()
    restored.load_state(original.state())

    expected = original.aggregate(global_model=after_one, updates=round_of(-0.2))
    actual = restored.aggregate(global_model=after_one, updates=round_of(-0.2))

    np.testing.assert_array_equal(actual["w"], expected["w"])
    assert original.state()  # there was state to carry over


def test_foreign_state_is_rejected() -> None:
    with pytest.raises(IncompatibleUpdateError):
        FedAdam().load_state({"momentum/w": np.zeros(2)})
    with pytest.raises(IncompatibleUpdateError):
        FedAvg().load_state({"m/w": np.zeros(2)})


def test_invalid_hyperparameters_are_rejected() -> None:
    with pytest.raises(IncompatibleUpdateError):
        FedAdam(beta_1=1.0)
    with pytest.raises(IncompatibleUpdateError):
        FedAvgM(momentum=-0.1)
