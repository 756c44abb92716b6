"""``fedbus privacy report`` against a fake event source (the job's events as a list)."""

from __future__ import annotations

import json

import pytest

from fedbus.events import (
    BudgetStatus,
    BudgetUpdated,
    DpUsage,
    Event,
    JobAccepted,
    JobMode,
    JobSpec,
    ModelRef,
    PrivacyBudget,
    PrivacyMode,
    PrivacySpec,
    RoundCompleted,
    UpdateSubmitted,
)
from fedbus.privacy import GaussianSteps, compute_epsilon_composed
from fedbus_cli import main
from fedbus_cli.commands import privacy

JOB = "job-report"
REF = ModelRef(object_key="k", size_bytes=1, sha256="c" * 64)
DP = DpUsage(noise_multiplier=1.1, sample_rate=0.05, steps=40, clipping_norm=1.0)
STEPS = GaussianSteps(1.1, 0.05, 40)


def eps(rounds: int) -> float:
    return compute_epsilon_composed(history=[STEPS] * rounds, delta=1e-5)


def accepted(mode: PrivacyMode = PrivacyMode.LOCAL_DP) -> JobAccepted:
    privacy = PrivacySpec(mode=mode, target_epsilon=8.0, delta=1e-5, clipping_norm=1.0)
    spec = JobSpec(mode=JobMode.FEDERATED, model="cnn", dataset="mnist", rounds=2, privacy=privacy)
    return JobAccepted.create(
        source="orchestration", job_id=JOB, tenant="t", request_event_id="r", spec=spec
    )


def update(round_: int, client: str) -> UpdateSubmitted:
    return UpdateSubmitted.create(
        source="trainer", job_id=JOB, round=round_, client_id=client, update=REF,
        num_samples=10, dp=DP,
    )  # fmt: skip


def completed(round_: int, clients: list[str]) -> RoundCompleted:
    return RoundCompleted.create(
        source="aggregator", job_id=JOB, round=round_, global_model=REF, participants=clients,
        total_samples=10,
    )  # fmt: skip


def budget(round_: int, spent: dict[str, float]) -> BudgetUpdated:
    def status(value: float) -> BudgetStatus:
        return BudgetStatus(epsilon_spent=value, epsilon_remaining=8.0 - value, delta=1e-5)

    return BudgetUpdated.create(
        source="privacy-accountant", job_id=JOB, round=round_,
        budget=PrivacyBudget(epsilon=8.0, delta=1e-5), total=status(max(spent.values())),
        clients={c: status(v) for c, v in spent.items()}, exhausted=False,
    )  # fmt: skip


def two_rounds() -> list[Event]:
    """A job whose accountant published the right numbers (topics interleaved)."""
    u1a = update(1, "a")
    return [
        completed(1, ["a", "b"]), accepted(), u1a, update(1, "b"), u1a,  # u1a redelivered
        budget(1, {"a": eps(1), "b": eps(1)}), update(2, "a"), update(2, "late"),
        completed(2, ["a"]), budget(2, {"a": eps(2), "b": eps(1)}),
    ]  # fmt: skip


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> list[Event]:
    events: list[Event] = []
    monkeypatch.setattr(privacy, "SOURCE", lambda job_id: list(events))
    return events


def test_a_matching_job_exits_0_with_a_row_per_round_and_client(
    log: list[Event], capsys: pytest.CaptureFixture[str]
) -> None:
    log += two_rounds()

    code = main(["privacy", "report", "--job", JOB])

    out = capsys.readouterr().out
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [(r[0], r[1], r[-1]) for r in rows] == [
        ("1", "(total)", "match"), ("1", "a", "match"), ("1", "b", "match"),
        ("2", "(total)", "match"), ("2", "a", "match"), ("2", "b", "match"),
    ]  # fmt: skip
    assert f"{eps(2):.12g}" in out
    assert "all match" in out


def test_a_wrong_published_number_is_a_mismatch(
    log: list[Event], capsys: pytest.CaptureFixture[str]
) -> None:
    log += [*two_rounds()[:-1], budget(2, {"a": eps(2) * (1 + 1e-9), "b": eps(1)})]

    code = main(["privacy", "report", "--job", JOB])

    out = capsys.readouterr().out
    assert code == 1
    assert [line.split()[1] for line in out.splitlines() if "MISMATCH" in line] == ["(total)", "a"]


def test_no_budget_published_exits_1(log: list[Event], capsys: pytest.CaptureFixture[str]) -> None:
    log += [accepted(), update(1, "a"), completed(1, ["a"])]

    code = main(["privacy", "report", "--job", JOB])

    captured = capsys.readouterr()
    assert code == 1
    assert "MISSING" in captured.out  # round 1 was ready and should have been published
    assert "no budget.updated" in captured.err


def test_json_output_carries_the_same_comparison(
    log: list[Event], capsys: pytest.CaptureFixture[str]
) -> None:
    log += two_rounds()

    code = main(["privacy", "report", "--job", JOB, "--json"])

    body = json.loads(capsys.readouterr().out)
    assert code == 0
    assert body["ok"] is True
    assert (body["mode"], body["budget"]) == ("local_dp", {"epsilon": 8.0, "delta": 1e-5})
    total_2 = next(r for r in body["rows"] if r["round"] == 2 and r["client"] == "(total)")
    assert total_2 == {"round": 2, "client": "(total)", "recomputed": eps(2),
                       "published": [eps(2)], "status": "match"}  # fmt: skip


def test_central_dp_totals_compose_every_release() -> None:
    release = DpUsage(noise_multiplier=1.5, sample_rate=1.0, steps=1, clipping_norm=1.0)
    rounds = [completed(r, clients).model_copy(update={"dp": release})
              for r, clients in [(1, ["a"]), (2, ["b"])]]  # fmt: skip
    one = compute_epsilon_composed(history=[GaussianSteps(1.5, 1.0, 1)], delta=1e-5)
    two = compute_epsilon_composed(history=[GaussianSteps(1.5, 1.0, 1)] * 2, delta=1e-5)
    central_total = BudgetStatus(epsilon_spent=two, epsilon_remaining=8.0 - two, delta=1e-5)
    published = [
        budget(1, {"a": one}),
        budget(2, {"a": one, "b": one}).model_copy(update={"total": central_total}),
    ]

    report = privacy.build_report(JOB, [accepted(PrivacyMode.CENTRAL_DP), *rounds, *published])

    assert [(r.round, r.client, r.recomputed, r.status) for r in report.rows] == [
        (1, "(total)", one, "match"), (1, "a", one, "match"),
        (2, "(total)", two, "match"), (2, "a", one, "match"), (2, "b", one, "match"),
    ]  # fmt: skip
    assert report.ok


def test_records_refused_for_their_signature_are_left_out_and_fail_the_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = ["update.submitted[0]@7: bound_field: trainer-b's key is bound to client_id 'b'"]
    monkeypatch.setattr(privacy, "SOURCE", lambda job_id: (two_rounds(), refused))

    code = main(["privacy", "report", "--job", JOB])

    err = capsys.readouterr().err
    assert code == 1
    assert "left out, not signed by a key allowed to say it: update.submitted[0]@7" in err
