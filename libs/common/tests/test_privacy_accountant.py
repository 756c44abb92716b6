"""The stateful RDP accountant."""

from __future__ import annotations

import pytest

from fedbus.privacy import GaussianSteps, RdpAccountant, compute_epsilon


def test_step_by_step_reproduces_opacus_golden_value() -> None:
    accountant = RdpAccountant()

    for _ in range(2250):
        accountant.step(noise_multiplier=1.5, sample_rate=0.04)

    assert accountant.get_epsilon(delta=1e-5) == pytest.approx(7.32911117143, abs=1e-6)
    assert accountant.history == (GaussianSteps(1.5, 0.04, 2250),)


def test_changing_parameters_starts_a_new_history_item() -> None:
    accountant = RdpAccountant()

    accountant.step(noise_multiplier=1.5, sample_rate=0.04, steps=100)
    accountant.step(noise_multiplier=1.0, sample_rate=0.04, steps=50)
    accountant.step(noise_multiplier=1.5, sample_rate=0.04, steps=10)

    assert len(accountant) == 3
    alone = compute_epsilon(noise_multiplier=1.5, sample_rate=0.04, steps=110, delta=1e-5)
    assert accountant.get_epsilon(delta=1e-5) > alone


def test_fresh_accountant_has_spent_nothing() -> None:
    assert RdpAccountant().get_epsilon(delta=1e-5) == 0.0
