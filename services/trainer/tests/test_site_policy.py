"""The site policy: pure decisions (golden cases and properties), its file, its log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbus.events import PrivacyMode, PrivacySpec, TrainingConfig
from fedbus.privacy import GaussianSteps, compute_epsilon_composed
from fedbus_trainer.site import SiteGate, declined_event
from fedbus_trainer.site_log import SiteLog
from fedbus_trainer.site_policy import (
    DAY,
    PolicyFileError,
    RoundAsk,
    SitePolicy,
    TrainedRound,
    decide,
    load_policy,
    round_mechanism,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def local_dp(
    epsilon: float = 1.0, *, noise: float | None = 1.1, delta: float = 1e-5
) -> PrivacySpec:
    return PrivacySpec(
        mode=PrivacyMode.LOCAL_DP,
        target_epsilon=epsilon,
        delta=delta,
        noise_multiplier=noise,
        clipping_norm=1.0,
    )


def ask(**overrides: Any) -> RoundAsk:
    fields: dict[str, Any] = {
        "job_id": "job-1",
        "round": 1,
        "model": "mlp",
        "privacy": local_dp(),
        "training": TrainingConfig(local_epochs=1, batch_size=32),
        "num_samples": 320,
    }
    fields.update(overrides)
    return RoundAsk(**fields)


def codes(policy: SitePolicy, a: RoundAsk, history: list[TrainedRound] | None = None) -> list[str]:
    return [r.code for r in decide(policy, a, history=history or [], now=NOW).reasons]


def test_the_empty_policy_accepts_anything() -> None:
    decision = decide(SitePolicy(), ask(privacy=PrivacySpec()), history=[], now=NOW)

    assert decision.accepted
    assert decision.retry_after_s is None


def test_a_larger_target_epsilon_is_declined_naming_both_figures() -> None:
    decision = decide(SitePolicy(max_epsilon=1.0), ask(privacy=local_dp(8.0)), history=[], now=NOW)

    assert [r.code for r in decision.reasons] == ["epsilon_too_large"]
    message = decision.reasons[0].message
    assert "epsilon 8" in message
    assert "at most 1 (max_epsilon)" in message
    assert decision.retry_after_s is None  # permanent for the job


@pytest.mark.parametrize("mode", [PrivacyMode.NONE, PrivacyMode.CENTRAL_DP])
def test_without_local_dp_a_max_epsilon_declines(mode: PrivacyMode) -> None:
    privacy = (
        PrivacySpec() if mode is PrivacyMode.NONE else local_dp().model_copy(update={"mode": mode})
    )

    assert codes(SitePolicy(max_epsilon=5.0), ask(privacy=privacy)) == ["local_dp_required"]


def test_the_sites_own_count_declines_a_round_that_would_pass_max_epsilon() -> None:
    # A small noise multiplier under a budget that fits the policy: the accountant would stop
    # the job at target_epsilon, but this site counts its own rounds and stops first.
    a = ask(privacy=local_dp(2.0, noise=1.5))
    mechanism = round_mechanism(a)
    assert mechanism is not None
    one = compute_epsilon_composed(history=[mechanism], delta=1e-5)
    policy = SitePolicy(max_epsilon=2.0)
    earlier = [TrainedRound(NOW - timedelta(hours=h), "job-1", mechanism) for h in (1, 2)]
    three = compute_epsilon_composed(history=[mechanism] * 3, delta=1e-5)
    assert one <= 2.0 < three  # the premise: one round fits, three do not

    assert codes(policy, a) == []
    reasons = decide(policy, a, history=earlier, now=NOW).reasons
    assert [r.code for r in reasons] == ["epsilon_too_large"]
    assert f"{three:.4g}" in reasons[0].message
    # Rounds of another job do not count against this one.
    other = [TrainedRound(t.time, "job-2", mechanism) for t in earlier]
    assert codes(policy, a, other) == []


def test_delta_and_models() -> None:
    policy = SitePolicy(max_delta=1e-5, allowed_models=["cnn", "mlp"])

    assert codes(policy, ask(privacy=local_dp(delta=1e-3))) == ["delta_too_large"]
    reasons = decide(policy, ask(model="lora"), history=[], now=NOW).reasons
    assert [r.code for r in reasons] == ["model_not_allowed"]
    assert "'lora'" in reasons[0].message
    assert "cnn, mlp" in reasons[0].message


def test_the_daily_limit_counts_any_24_hours_and_says_when_a_slot_frees() -> None:
    policy = SitePolicy(max_rounds_per_day=2)
    old = TrainedRound(NOW - DAY - timedelta(seconds=1), "job-0", None)
    first = TrainedRound(NOW - timedelta(hours=20), "job-0", None)
    second = TrainedRound(NOW - timedelta(hours=1), "job-0", None)

    assert codes(policy, ask(), [old, first]) == []
    decision = decide(policy, ask(), history=[old, first, second], now=NOW)
    assert [r.code for r in decision.reasons] == ["daily_round_limit"]
    assert decision.retry_after_s == 4 * 3600  # first + 24 h
    # With a permanent reason too, the decline is permanent.
    both = decide(
        SitePolicy(max_rounds_per_day=2, allowed_models=["cnn"]),
        ask(),
        history=[first, second],
        now=NOW,
    )
    assert [r.code for r in both.reasons] == ["model_not_allowed", "daily_round_limit"]
    assert both.retry_after_s is None


@settings(max_examples=60, deadline=None)
@given(
    target=st.floats(min_value=0.05, max_value=50),
    limit=st.floats(min_value=0.05, max_value=50),
)
def test_a_target_above_the_limit_is_always_declined(target: float, limit: float) -> None:
    decision = decide(
        SitePolicy(max_epsilon=limit),
        ask(privacy=local_dp(target, noise=50.0)),
        history=[],
        now=NOW,
    )

    by_target = [r for r in decision.reasons if "privacy.target_epsilon" in r.message]
    assert bool(by_target) == (target > limit)
    assert all(r.code == "epsilon_too_large" for r in decision.reasons)


@settings(max_examples=40, deadline=None)
@given(
    limit=st.integers(min_value=0, max_value=5),
    gaps=st.lists(st.integers(min_value=0, max_value=30 * 3600), min_size=1, max_size=15),
)
def test_never_more_than_the_daily_limit_in_any_24_hours(limit: int, gaps: list[int]) -> None:
    policy = SitePolicy(max_rounds_per_day=limit)
    log = SiteLog()
    now = NOW
    accepted: list[datetime] = []
    for i, gap in enumerate(gaps):
        now += timedelta(seconds=gap)
        decision = decide(policy, ask(job_id=f"job-{i}"), history=log.history("x", now), now=now)
        if decision.accepted:
            log.record(f"attempt-{i}", TrainedRound(now, f"job-{i}", None))
            accepted.append(now)
        else:
            assert decision.retry_after_s is not None
            assert decision.retry_after_s > 0

    for t in accepted:
        assert sum(1 for u in accepted if t - DAY < u <= t) <= limit


def test_the_site_log_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "trainer-c1" / "site-rounds.json"
    mechanism = GaussianSteps(1.1, 0.1, 10)
    SiteLog(path).record("e1", TrainedRound(NOW, "job-1", mechanism))

    again = SiteLog(path)

    assert again.accepted("e1")
    assert again.history("job-1", NOW + timedelta(days=3)) == [
        TrainedRound(NOW, "job-1", mechanism)
    ]
    assert again.history("job-2", NOW + timedelta(days=3)) == []


def test_a_torn_site_log_is_refused_not_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "site-rounds.json"
    path.write_text('{"e1": {"time": "not a time"')

    with pytest.raises(ValueError, match=r"site-rounds\.json"):
        SiteLog(path)


def test_policy_files_yaml_and_json(tmp_path: Path) -> None:
    yml = tmp_path / "policy.yaml"
    yml.write_text(
        "max_epsilon: 2\nmax_delta: 1e-5\nallowed_models: [mlp]\nmax_rounds_per_day: 10\n"
    )
    js = tmp_path / "policy.json"
    js.write_text(json.dumps({"max_epsilon": 2.5, "max_delta": 1e-5}))

    assert load_policy(yml) == SitePolicy(
        max_epsilon=2.0, max_delta=1e-5, allowed_models=["mlp"], max_rounds_per_day=10
    )
    assert load_policy(js) == SitePolicy(max_epsilon=2.5, max_delta=1e-5)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("max_epsilon: 1\nmax_epsilom: 2\n", "max_epsilom"),
        ("max_epsilon: '1'\n", "max_epsilon"),
        ("max_rounds_per_day: 2.5\n", "max_rounds_per_day"),
        ("allowed_models: mlp\n", "allowed_models"),
        ("max_epsilon: -1\n", "max_epsilon"),
        ("- max_epsilon\n", "mapping"),
        ("max_epsilon: [1\n", "policy.yaml"),
    ],
)
def test_a_bad_policy_file_names_the_file_and_the_problem(
    tmp_path: Path, text: str, needle: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)

    with pytest.raises(PolicyFileError) as caught:
        load_policy(path)

    assert str(path) in str(caught.value)
    assert needle in str(caught.value)


def test_a_missing_policy_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match=r"nowhere\.yaml"):
        load_policy(tmp_path / "nowhere.yaml")


def test_the_gate_counts_an_accepted_round_once_and_builds_the_decline() -> None:
    gate = SiteGate(SitePolicy(max_rounds_per_day=1), SiteLog(), clock=lambda: NOW)

    assert gate.admit(ask(), attempt_id="e1").accepted
    assert gate.admit(ask(), attempt_id="e1").accepted  # a redelivery: not counted again
    refused = gate.admit(ask(round=2), attempt_id="e2")
    event = declined_event(
        refused, job_id="job-1", round_number=2, client_id="c1", started_event_id="e2",
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )  # fmt: skip

    assert [r.code for r in event.reasons] == ["daily_round_limit"]
    assert (event.round, event.client_id, event.started_event_id) == (2, "c1", "e2")
    assert event.retry_after_s == 24 * 3600
    assert event.traceparent.split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert len(gate.log.history("job-1", NOW)) == 1


def test_check_reads_the_rounds_own_fields() -> None:
    from fedbus.events import RoundStarted, StrategySpec

    gate = SiteGate(SitePolicy(max_epsilon=1.0, allowed_models=["cnn"]), clock=lambda: NOW)
    event = RoundStarted.create(
        source="orchestration", job_id="job-9", round=3, selected_clients=["c1"],
        min_clients=1, deadline=NOW + timedelta(minutes=5), model="mlp", dataset="digits",
        training=TrainingConfig(), strategy=StrategySpec(), privacy=local_dp(8.0), seed=1,
    )  # fmt: skip

    declined = gate.check(event, attempt_id=event.event_id, client_id="c1", num_samples=300)

    assert declined is not None
    assert (declined.job_id, declined.round, declined.started_event_id) == (
        "job-9", 3, event.event_id,
    )  # fmt: skip
    assert [r.code for r in declined.reasons] == ["model_not_allowed", "epsilon_too_large"]
    assert gate.check(
        event.model_copy(update={"model": "cnn", "privacy": local_dp(0.9, noise=5.0)}),
        attempt_id="other", client_id="c1", num_samples=300,
    ) is None  # fmt: skip


def test_the_example_policy_in_docs_services_md_loads(tmp_path: Path) -> None:
    page = (Path(__file__).resolve().parents[3] / "docs" / "services.md").read_text()
    block = page.split("<!-- site-policy-example -->", 1)[1].split("```yaml\n", 1)[1]
    path = tmp_path / "site-policy.yaml"
    path.write_text(block.split("```", 1)[0])

    assert load_policy(path) == SitePolicy(
        max_epsilon=2.0, max_delta=1e-5, allowed_models=["cnn", "mlp"], max_rounds_per_day=24
    )
