"""Client selection: who is eligible, how many are picked, and reproducibly so."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from fedbus.events import JobMode, JobSpec, PrivacyMode, PrivacySpec, TrainerStatus
from fedbus.privacy import GaussianSteps
from fedbus_orchestration.lifetime import ClientSpend, Lifetimes, select_within_caps
from fedbus_orchestration.selection import (
    TrainerInfo,
    eligible_trainers,
    round_size,
    select_clients,
)

NOW = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)


def trainer(cid: str, *, age_s: float = 0, interval: int = 2, dataset: str = "digits",
            status: TrainerStatus = TrainerStatus.IDLE) -> TrainerInfo:  # fmt: skip
    return TrainerInfo(
        client_id=cid, datasets={dataset: 10}, device="cpu", status=status,
        last_seen=NOW - timedelta(seconds=age_s), interval_seconds=interval,
    )  # fmt: skip


def test_only_fresh_trainers_holding_the_dataset_are_eligible() -> None:
    trainers = [
        trainer("c-fresh", age_s=5.9),  # younger than 3 x 2 s
        trainer("a-stale", age_s=6.0),  # exactly 3 intervals: gone
        trainer("b-other-data", dataset="faces"),
        trainer("d-draining", status=TrainerStatus.DRAINING),
        trainer("e-slow-interval", age_s=50, interval=20),
    ]

    got = eligible_trainers(trainers, dataset="digits", now=NOW)

    assert got == ["c-fresh", "e-slow-interval"]


def test_staleness_factor_is_configurable() -> None:
    got = eligible_trainers([trainer("a", age_s=3)], dataset="digits", now=NOW, staleness_factor=1)

    assert got == []


@pytest.mark.parametrize(
    ("overrides", "eligible", "expected"),
    [
        ({"clients_per_round": 3, "min_clients": 1}, 10, 3),
        ({"clients_per_round": 3, "min_clients": 1}, 2, 2),  # never more than eligible
        ({"clients_per_round": None, "client_fraction": 0.3, "min_clients": 1}, 10, 3),
        ({"clients_per_round": None, "client_fraction": 0.25, "min_clients": 1}, 10, 3),  # ceil
        ({"clients_per_round": None, "client_fraction": 0.1, "min_clients": 2}, 10, 2),  # min
        ({"clients_per_round": None, "client_fraction": None, "min_clients": 1}, 7, 7),  # all
        ({"mode": JobMode.CENTRALIZED, "clients_per_round": None, "min_clients": 1}, 5, 1),
        ({"clients_per_round": 4, "min_clients": 2}, 0, 0),
    ],
)
def test_round_size(
    make_spec: Callable[..., JobSpec], overrides: dict[str, object], eligible: int, expected: int
) -> None:
    assert round_size(make_spec(**overrides), eligible) == expected


def test_selection_is_reproducible_and_depends_on_round_and_attempt(
    make_spec: Callable[..., JobSpec],
) -> None:
    spec = make_spec(clients_per_round=3, min_clients=1)
    ids = [f"c{i:02d}" for i in range(20)]

    first = select_clients(spec, ids, seed=42, round=1, attempt=1)
    again = select_clients(spec, list(reversed(ids)), seed=42, round=1, attempt=1)
    variants = {
        tuple(select_clients(spec, ids, seed=42, round=r, attempt=a))
        for r, a in [(1, 1), (2, 1), (1, 2), (3, 1)]
    }

    assert first == again
    assert len(first) == 3
    assert set(first) <= set(ids)
    assert first == sorted(first)
    assert len(variants) > 1  # another round or attempt draws another sample


def test_selection_matches_the_documented_recipe(make_spec: Callable[..., JobSpec]) -> None:
    import random

    spec = make_spec(clients_per_round=2, min_clients=1)
    ids = ["c", "a", "d", "b"]

    got = select_clients(spec, ids, seed=9, round=4, attempt=2)

    assert got == sorted(random.Random("9:4:2").sample(["a", "b", "c", "d"], 2))


def test_selection_under_a_lifetime_cap_does_not_depend_on_the_order_of_the_pool(
    make_spec: Callable[..., JobSpec],
) -> None:
    privacy = PrivacySpec(
        mode=PrivacyMode.CENTRAL_DP, target_epsilon=100.0, delta=1e-5, noise_multiplier=2.0,
        clipping_norm=1.0,
    )  # fmt: skip
    spec = make_spec(clients_per_round=3, min_clients=1, privacy=privacy)
    ids = [f"c{i:02d}" for i in range(10)]
    spent_out = ClientSpend("c03", "digits", 1, (GaussianSteps(0.3, 1.0, 1),))
    lifetimes = Lifetimes(cap=10.0, spent={c: spent_out for c in ("c03", "c07")})

    picks = [
        select_within_caps(spec, pool, seed=5, round=2, attempt=1, samples={}, lifetimes=lifetimes)
        for pool in (ids, ids[::-1], ids[4:] + ids[:4])
    ]

    assert picks[0] == picks[1] == picks[2]
    assert len(picks[0].selected) == 3
    assert not {"c03", "c07"} & set(picks[0].selected)
    assert picks[0].capped  # the cap left someone out, so the re-selection ran
