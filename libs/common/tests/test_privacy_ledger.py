"""The privacy ledger: idempotent entries, derived totals, admission."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbus.privacy import (
    InvalidPrivacyParameterError,
    LedgerEntry,
    Mechanism,
    PlannedSpend,
    PrivacyLedger,
    compute_epsilon,
)

DELTA = 1e-5
FAST = settings(max_examples=20, deadline=None)


def entry(
    event_id: str,
    *,
    job_id: str = "job-1",
    client_id: str = "client-a",
    dataset: str = "mnist-a",
    round_: int = 0,
    noise_multiplier: float = 1.5,
    sample_rate: float = 0.04,
    steps: int = 100,
    mechanism: Mechanism = "local-dp",
) -> LedgerEntry:
    return LedgerEntry(
        event_id=event_id,
        job_id=job_id,
        client_id=client_id,
        dataset=dataset,
        round=round_,
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        steps=steps,
        mechanism=mechanism,
    )


def test_redelivered_event_is_not_spent_twice() -> None:
    ledger = PrivacyLedger(delta=DELTA)

    first = ledger.append(entry("evt-1", steps=2250))
    again = ledger.append(entry("evt-1", steps=2250))

    assert (first, again) == (True, False)
    assert len(ledger) == 1
    assert ledger.epsilon_for_job_client("job-1", "client-a") == pytest.approx(7.32911117143)


def test_client_total_composes_its_rounds() -> None:
    ledger = PrivacyLedger(delta=DELTA)

    for round_ in range(3):
        ledger.append(entry(f"evt-{round_}", round_=round_, steps=750))

    assert ledger.epsilon_for_job_client("job-1", "client-a") == pytest.approx(7.32911117143)


def test_job_total_is_the_largest_client_total() -> None:
    ledger = PrivacyLedger(delta=DELTA)
    ledger.append(entry("evt-a", client_id="client-a", steps=100))
    ledger.append(entry("evt-b", client_id="client-b", dataset="mnist-b", steps=400))

    job = ledger.epsilon_for_job("job-1")

    assert job == ledger.epsilon_for_job_client("job-1", "client-b")
    assert job > ledger.epsilon_for_job_client("job-1", "client-a")


def test_dataset_total_spans_jobs_and_ignores_other_datasets() -> None:
    ledger = PrivacyLedger(delta=DELTA)
    ledger.append(entry("evt-1", job_id="job-1", steps=1000))
    ledger.append(entry("evt-2", job_id="job-2", steps=1250))
    ledger.append(entry("evt-3", job_id="job-2", dataset="other", steps=5000))

    spent = ledger.epsilon_for_client_dataset("client-a", "mnist-a")

    assert spent == pytest.approx(7.32911117143)


def test_mechanism_filter_separates_local_and_central_dp() -> None:
    ledger = PrivacyLedger(delta=DELTA)
    ledger.append(entry("evt-1", steps=2250))
    ledger.append(
        entry("evt-2", noise_multiplier=1.0, sample_rate=0.1, steps=10, mechanism="central-dp")
    )

    local_only = ledger.epsilon_for_job("job-1", mechanism="local-dp")
    both = ledger.epsilon_for_job("job-1")

    assert local_only == pytest.approx(7.32911117143)
    assert both > local_only


def test_empty_ledger_has_spent_nothing() -> None:
    ledger = PrivacyLedger(delta=DELTA)

    assert ledger.epsilon_for_job("job-1") == 0.0
    assert ledger.epsilon_for_client_dataset("client-a", "mnist-a") == 0.0


def test_projection_equals_the_total_after_spending() -> None:
    ledger = PrivacyLedger(delta=DELTA)
    ledger.append(entry("evt-1", steps=1000))
    planned = PlannedSpend("job-1", "client-a", "mnist-a", 1.5, 0.04, 1250)

    projected = ledger.projected_epsilon(planned)
    ledger.append(entry("evt-2", round_=1, steps=1250))

    assert projected.job_client == pytest.approx(7.32911117143)
    assert projected.job == pytest.approx(ledger.epsilon_for_job("job-1"))
    assert projected.client_dataset == pytest.approx(
        ledger.epsilon_for_client_dataset("client-a", "mnist-a")
    )


def test_would_exceed_checks_each_budget_given() -> None:
    ledger = PrivacyLedger(delta=DELTA)
    ledger.append(entry("evt-1", job_id="old-job", steps=2000))
    planned = PlannedSpend("job-1", "client-a", "mnist-a", 1.5, 0.04, 250)

    assert not ledger.would_exceed(planned, job_budget=7.0)
    assert ledger.would_exceed(planned, job_budget=7.0, client_dataset_budget=7.0)
    assert not ledger.would_exceed(planned)


def test_replay_from_entries_gives_the_same_totals() -> None:
    original = PrivacyLedger(delta=DELTA)
    for i in range(4):
        original.append(entry(f"evt-{i}", client_id=f"client-{i % 2}", steps=100 * (i + 1)))

    replayed = PrivacyLedger(delta=DELTA, entries=[*original.entries, *original.entries])

    assert replayed.entries == original.entries
    assert replayed.epsilon_for_job("job-1") == original.epsilon_for_job("job-1")


@pytest.mark.parametrize(
    "overrides",
    [{"event_id": ""}, {"round_": -1}, {"steps": -5}, {"sample_rate": 2.0}],
)
def test_invalid_entries_are_rejected(overrides: dict[str, object]) -> None:
    kwargs: dict[str, object] = {"event_id": "evt-1", **overrides}
    with pytest.raises(InvalidPrivacyParameterError):
        entry(**kwargs)  # type: ignore[arg-type]


entries_strategy = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=6),  # event id: small range forces duplicates
        st.sampled_from(["client-a", "client-b"]),
        st.integers(min_value=1, max_value=300),
    ),
    max_size=12,
)


@FAST
@given(raw=entries_strategy)
def test_duplicated_entries_leave_totals_unchanged(raw: list[tuple[int, str, int]]) -> None:
    ledger = PrivacyLedger(delta=DELTA)
    for key, client, steps in raw:
        ledger.append(entry(f"evt-{key}", client_id=client, steps=steps))
    before = ledger.epsilon_for_job("job-1"), len(ledger)

    for existing in ledger.entries:
        assert not ledger.append(existing)

    assert (ledger.epsilon_for_job("job-1"), len(ledger)) == before


@FAST
@given(
    budget=st.floats(min_value=0.5, max_value=8.0),
    rounds=st.lists(
        st.tuples(st.floats(min_value=0.6, max_value=3.0), st.integers(1, 400)),
        min_size=1,
        max_size=15,
    ),
)
def test_budget_guarded_rounds_never_end_above_budget(
    budget: float, rounds: list[tuple[float, int]]
) -> None:
    ledger = PrivacyLedger(delta=DELTA)

    for number, (sigma, steps) in enumerate(rounds):
        planned = PlannedSpend("job-1", "client-a", "mnist-a", sigma, 0.05, steps)
        if not ledger.would_exceed(planned, job_budget=budget, client_dataset_budget=budget):
            ledger.append(
                entry(
                    f"evt-{number}",
                    round_=number,
                    noise_multiplier=sigma,
                    sample_rate=0.05,
                    steps=steps,
                )
            )

    assert ledger.epsilon_for_job("job-1") <= budget
    assert ledger.epsilon_for_client_dataset("client-a", "mnist-a") <= budget


def test_single_entry_total_matches_the_pure_function() -> None:
    ledger = PrivacyLedger(delta=DELTA)
    ledger.append(entry("evt-1", noise_multiplier=1.1, sample_rate=0.01, steps=777))

    expected = compute_epsilon(noise_multiplier=1.1, sample_rate=0.01, steps=777, delta=DELTA)

    assert ledger.epsilon_for_job_client("job-1", "client-a") == expected
