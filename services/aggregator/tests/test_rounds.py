"""Round bookkeeping: when a round aggregates, expires or waits, and who is dropped why."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from fedbus.events import ModelRef, RoundStarted
from fedbus_aggregator.rounds import (
    Admission,
    Decision,
    RejectCode,
    RoundState,
    RoundStatus,
    UpdateRecord,
    UpdateStatus,
    weighted_train_metrics,
)

REF = ModelRef(object_key="k", size_bytes=1, sha256="0" * 64)


def record(client: str, *, ok: bool = True, n: int = 10, **metrics: float) -> UpdateRecord:
    base = UpdateRecord(client, REF, n, metrics, UpdateStatus.PENDING)
    return base.accepted() if ok else base.rejected(RejectCode.INVALID_UPDATE, "NaN in w")


def test_all_selected_reported_aggregates_before_the_deadline(
    started: Callable[..., RoundStarted],
) -> None:
    event = started(min_clients=2)
    state = RoundState.open(event)
    for client in ("a", "b", "c"):
        state = state.with_update(record(client))

    assert state.decide(event.time) is Decision.AGGREGATE
    assert state.dropped() == []


def test_waits_while_clients_are_missing_and_the_deadline_is_ahead(
    started: Callable[..., RoundStarted],
) -> None:
    event = started(min_clients=2)
    state = RoundState.open(event).with_update(record("a")).with_update(record("b"))

    assert state.decide(event.deadline - timedelta(seconds=1)) is Decision.WAIT


def test_deadline_with_enough_accepted_aggregates_and_drops_stragglers(
    started: Callable[..., RoundStarted],
) -> None:
    event = started(min_clients=2)
    state = RoundState.open(event).with_update(record("a")).with_update(record("b"))

    assert state.decide(event.deadline) is Decision.AGGREGATE
    dropped = state.dropped()
    assert [(d.client_id, d.code) for d in dropped] == [("c", "deadline")]


def test_deadline_with_fewer_than_min_accepted_expires(
    started: Callable[..., RoundStarted],
) -> None:
    event = started(min_clients=2)
    state = RoundState.open(event).with_update(record("a")).with_update(record("b", ok=False))

    assert state.decide(event.deadline) is Decision.EXPIRE
    assert "1 of min 2" in state.shortfall()


def test_all_reported_but_too_many_rejected_expires_at_once(
    started: Callable[..., RoundStarted],
) -> None:
    event = started(clients=("a", "b"), min_clients=2)
    state = RoundState.open(event).with_update(record("a")).with_update(record("b", ok=False))

    assert state.decide(event.time) is Decision.EXPIRE


def test_rejected_update_counts_as_reported_and_is_dropped_with_its_reason(
    started: Callable[..., RoundStarted],
) -> None:
    event = started(min_clients=2)
    state = RoundState.open(event)
    state = (
        state.with_update(record("a")).with_update(record("b")).with_update(record("c", ok=False))
    )

    assert state.decide(event.time) is Decision.AGGREGATE
    [dropped] = state.dropped()
    assert (dropped.client_id, dropped.code, dropped.message) == ("c", "invalid_update", "NaN in w")
    assert [u.client_id for u in state.accepted()] == ["a", "b"]


def test_second_update_of_a_client_is_a_duplicate(started: Callable[..., RoundStarted]) -> None:
    state = RoundState.open(started()).with_update(record("a"))

    assert state.admit("a") is Admission.DUPLICATE
    assert state.admit("b") is Admission.CHECK


def test_unselected_client_is_not_admitted(started: Callable[..., RoundStarted]) -> None:
    assert RoundState.open(started()).admit("mallory") is Admission.NOT_SELECTED


def test_nothing_goes_into_an_aggregated_round(started: Callable[..., RoundStarted]) -> None:
    state = RoundState(job_id="job-1", round=1, started=started(), status=RoundStatus.AGGREGATED)

    assert state.admit("a") is Admission.CLOSED
    assert state.decide(state.deadline) is Decision.WAIT


def test_retry_replaces_selection_and_keeps_updates_of_reselected_clients(
    started: Callable[..., RoundStarted],
) -> None:
    first = started(clients=("a", "b", "c"))
    state = RoundState.open(first).with_update(record("a")).with_update(record("b"))
    state = RoundState(
        job_id=state.job_id,
        round=state.round,
        started=first,
        status=RoundStatus.EXPIRED,
        updates=state.updates,
    )
    retry = started(clients=("a", "d"), time=first.time + timedelta(seconds=90))

    again = state.restarted(retry)

    assert again.status is RoundStatus.OPEN
    assert again.version == 2
    assert again.selected == ("a", "d")
    assert set(again.updates) == {"a"}
    assert again.deadline == retry.deadline


def test_retry_from_another_global_model_forgets_every_update(
    started: Callable[..., RoundStarted],
) -> None:
    first = started()
    state = RoundState.open(first).with_update(record("a"))

    again = state.restarted(started(global_model=REF))

    assert again.updates == {}


def test_pending_updates_are_not_reported(started: Callable[..., RoundStarted]) -> None:
    pending = UpdateRecord("a", REF, 5, {}, UpdateStatus.PENDING)
    state = RoundState.open(started()).with_update(pending)

    assert state.reported() == set()
    assert state.admit("a") is Admission.CHECK
    assert state.pending() == [pending]


def test_train_metrics_are_weighted_by_samples() -> None:
    records = [record("a", n=10, loss=1.0, accuracy=0.5), record("b", n=30, loss=3.0)]

    metrics = weighted_train_metrics(records)

    assert metrics["train_loss"] == 2.5
    assert metrics["train_accuracy"] == 0.5
