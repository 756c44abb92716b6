"""The job state machine, transition by transition (pure: no store, no bus)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from fedbus.events import (
    BudgetStatus,
    BudgetUpdated,
    Event,
    JobAccepted,
    JobCancelRequested,
    JobCompleted,
    JobFailed,
    JobRequested,
    JobStatus,
    ModelRef,
    Phase,
    PrivacyBudget,
    Progress,
    RoundCompleted,
    RoundStarted,
)
from fedbus_orchestration.endings import cancel
from fedbus_orchestration.jobs import accept, after_budget, after_deadline, after_round
from fedbus_orchestration.state import Job, JobState, Policy

ELIGIBLE = ["a", "b", "c"]
POLICY = Policy(max_round_retries=2, max_rollbacks=2, round_grace_seconds=5)


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


def started(events: list[Event]) -> RoundStarted:
    (event,) = [e for e in events if isinstance(e, RoundStarted)]
    return event


def running_job(make_request: Callable[..., JobRequested], now: datetime, **spec: object) -> Job:
    return accept(make_request(**spec), eligible=ELIGIBLE, now=now).job


def test_accept_opens_round_one(
    make_request: Callable[..., JobRequested], clock: Callable[[], datetime]
) -> None:
    request = make_request(seed=None)

    t = accept(request, eligible=ELIGIBLE, now=clock())

    assert types(t.events) == ["job.accepted", "progress", "round.started"]
    accepted, progress, rs = t.events
    assert isinstance(accepted, JobAccepted)
    assert accepted.request_event_id == request.event_id
    assert accepted.spec.seed is not None  # orchestration picks and reports one
    assert isinstance(progress, Progress)
    assert progress.phase is Phase.SCHEDULING
    assert isinstance(rs, RoundStarted)
    assert (rs.round, rs.global_model, rs.min_clients, rs.seed) == (1, None, 2, accepted.spec.seed)
    assert len(rs.selected_clients) == 2
    assert set(rs.selected_clients) <= set(ELIGIBLE)
    assert rs.deadline == clock() + timedelta(seconds=60)
    assert (t.job.state, t.job.round, t.job.attempt) == (JobState.RUNNING, 1, 1)
    trace_id = request.traceparent.split("-")[1]
    assert all(e.traceparent.split("-")[1] == trace_id for e in t.events)
    assert all(e.job_id == request.job_id and e.source == "orchestration" for e in t.events)


def test_a_completed_round_starts_the_next_from_its_model(
    make_request: Callable[..., JobRequested], make_completed: Callable[..., RoundCompleted],
    clock: Callable[[], datetime],
) -> None:  # fmt: skip
    job = running_job(make_request, clock())
    done = make_completed(job.job_id, 1)

    t = after_round(job, done, eligible=ELIGIBLE, now=clock(), policy=POLICY)

    rs = started(t.events)
    assert (rs.round, rs.global_model) == (2, done.global_model)
    assert (t.job.round, t.job.attempt, t.job.rounds_completed) == (2, 1, 1)


def test_the_last_round_completes_the_job(
    make_request: Callable[..., JobRequested], make_completed: Callable[..., RoundCompleted],
    clock: Callable[[], datetime],
) -> None:  # fmt: skip
    job = running_job(make_request, clock(), rounds=2)
    job = after_round(job, make_completed(job.job_id, 1), eligible=ELIGIBLE, now=clock(),
                      policy=POLICY).job  # fmt: skip
    last = make_completed(job.job_id, 2, loss=0.5)

    t = after_round(job, last, eligible=ELIGIBLE, now=clock(), policy=POLICY)

    assert types(t.events) == ["progress", "job.completed"]
    completed = t.events[1]
    assert isinstance(completed, JobCompleted)
    assert completed.status is JobStatus.COMPLETED
    assert completed.rounds_completed == 2
    assert completed.final_model == last.global_model
    assert completed.metrics["loss"] == 0.5
    assert t.job.state is JobState.COMPLETED


def test_late_and_repeated_round_results_change_nothing(
    make_request: Callable[..., JobRequested], make_completed: Callable[..., RoundCompleted],
    clock: Callable[[], datetime],
) -> None:  # fmt: skip
    job = running_job(make_request, clock())
    first = make_completed(job.job_id, 1)
    job = after_round(job, first, eligible=ELIGIBLE, now=clock(), policy=POLICY).job

    again = after_round(job, make_completed(job.job_id, 1), eligible=ELIGIBLE, now=clock(),
                        policy=POLICY)  # fmt: skip
    future = after_round(job, make_completed(job.job_id, 5), eligible=ELIGIBLE, now=clock(),
                         policy=POLICY)  # fmt: skip

    assert again.events == []
    assert again.job == job
    assert future.events == []
    assert future.job == job


def test_divergence_rolls_back_then_fails_after_max_rollbacks(
    make_request: Callable[..., JobRequested], make_completed: Callable[..., RoundCompleted],
    clock: Callable[[], datetime],
) -> None:  # fmt: skip
    job = running_job(make_request, clock(), rounds=5)
    good = make_completed(job.job_id, 1, loss=1.0)
    job = after_round(job, good, eligible=ELIGIBLE, now=clock(), policy=POLICY).job

    for rnd, rollbacks in [(2, 1), (3, 2)]:
        t = after_round(job, make_completed(job.job_id, rnd, loss=10.5), eligible=ELIGIBLE,
                        now=clock(), policy=POLICY)  # fmt: skip
        rs = started(t.events)
        assert rs.round == rnd + 1
        assert rs.global_model == good.global_model
        assert t.job.rollbacks == rollbacks
        assert t.job.rounds_completed == 1
        job = t.job
    t = after_round(job, make_completed(job.job_id, 4, loss=99.0), eligible=ELIGIBLE,
                    now=clock(), policy=POLICY)  # fmt: skip

    assert types(t.events) == ["progress", "job.failed"]
    failed = t.events[1]
    assert isinstance(failed, JobFailed)
    assert failed.code == "diverged"
    assert failed.round == 4
    assert failed.rounds_completed == 1
    assert t.job.state is JobState.FAILED


def test_a_loss_below_ten_times_the_previous_is_progress(
    make_request: Callable[..., JobRequested], make_completed: Callable[..., RoundCompleted],
    clock: Callable[[], datetime],
) -> None:  # fmt: skip
    job = running_job(make_request, clock())
    job = after_round(job, make_completed(job.job_id, 1, loss=1.0), eligible=ELIGIBLE,
                      now=clock(), policy=POLICY).job  # fmt: skip

    t = after_round(job, make_completed(job.job_id, 2, loss=9.9), eligible=ELIGIBLE, now=clock(),
                    policy=POLICY)  # fmt: skip

    assert t.job.rollbacks == 0
    assert t.job.rounds_completed == 2


def test_deadline_retries_the_round_then_fails_with_too_few_clients(
    make_request: Callable[..., JobRequested], clock: Callable[[], datetime],
) -> None:  # fmt: skip
    now = clock()
    job = running_job(make_request, now)
    assert after_deadline(job, eligible=ELIGIBLE, now=now + timedelta(seconds=65),
                          policy=POLICY).events == []  # within the grace period  # fmt: skip

    for attempt in (2, 3):
        assert job.deadline is not None
        now = job.deadline + timedelta(seconds=5.001)
        t = after_deadline(job, eligible=ELIGIBLE, now=now, policy=POLICY)
        rs = started(t.events)
        assert (rs.round, t.job.attempt) == (1, attempt)
        assert rs.deadline == now + timedelta(seconds=60)
        job = t.job
    assert job.deadline is not None
    t = after_deadline(job, eligible=ELIGIBLE, now=job.deadline + timedelta(seconds=6),
                       policy=POLICY)  # fmt: skip

    assert types(t.events) == ["progress", "job.failed"]
    failed = t.events[1]
    assert isinstance(failed, JobFailed)
    assert failed.code == "too_few_clients"
    assert failed.message.startswith("round 1: ")
    assert "min 2" in failed.message
    assert t.job.state is JobState.FAILED


def test_cancel_ends_a_running_job_once_and_only_for_its_tenant(
    make_request: Callable[..., JobRequested], clock: Callable[[], datetime],
) -> None:  # fmt: skip
    job = running_job(make_request, clock())

    def ask(tenant: str) -> JobCancelRequested:
        return JobCancelRequested.create(source="gateway", job_id=job.job_id, tenant=tenant,
                                         requested_by="alice", reason="enough")  # fmt: skip

    assert cancel(job, ask("intruder")).events == []
    t = cancel(job, ask("acme"))
    assert types(t.events) == ["progress", "job.completed"]
    completed = t.events[1]
    assert isinstance(completed, JobCompleted)
    assert completed.status is JobStatus.CANCELLED
    assert t.job.state is JobState.CANCELLED
    assert cancel(t.job, ask("acme")).events == []


def test_events_after_the_end_are_ignored(
    make_request: Callable[..., JobRequested], make_completed: Callable[..., RoundCompleted],
    clock: Callable[[], datetime],
) -> None:  # fmt: skip
    job = running_job(make_request, clock())
    ask = JobCancelRequested.create(source="gateway", job_id=job.job_id, tenant="acme",
                                    requested_by="alice")  # fmt: skip
    ended = cancel(job, ask).job
    late = clock() + timedelta(hours=1)

    assert after_round(ended, make_completed(job.job_id, 1), eligible=ELIGIBLE, now=late,
                       policy=POLICY).events == []  # fmt: skip
    assert after_deadline(ended, eligible=ELIGIBLE, now=late, policy=POLICY).events == []


def test_an_exhausted_budget_ends_the_job_with_its_guarantee(
    make_request: Callable[..., JobRequested], make_completed: Callable[..., RoundCompleted],
    clock: Callable[[], datetime],
) -> None:  # fmt: skip
    job = running_job(make_request, clock())
    job = after_round(job, make_completed(job.job_id, 1), eligible=ELIGIBLE, now=clock(),
                      policy=POLICY).job  # fmt: skip
    status = BudgetStatus(epsilon_spent=7.9, epsilon_remaining=0.1, delta=1e-5)

    def budget(exhausted: bool) -> BudgetUpdated:
        return BudgetUpdated.create(source="privacy-accountant", job_id=job.job_id, round=1,
                                    budget=PrivacyBudget(epsilon=8, delta=1e-5), total=status,
                                    exhausted=exhausted)  # fmt: skip

    assert after_budget(job, budget(False)).events == []
    t = after_budget(job, budget(True))

    completed = t.events[1]
    assert isinstance(completed, JobCompleted)
    assert completed.status is JobStatus.BUDGET_EXHAUSTED
    assert completed.rounds_completed == 1
    assert isinstance(completed.final_model, ModelRef)
    assert completed.guarantee is not None
    assert completed.guarantee.epsilon == 7.9
