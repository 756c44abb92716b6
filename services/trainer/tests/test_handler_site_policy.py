"""The trainer's handler with a site policy: a refused round is declined, not trained or sent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fedbus.bus import InMemoryBus
from fedbus.events import (
    ModelRef,
    PrivacyMode,
    PrivacySpec,
    RoundAssigned,
    RoundDeclined,
)
from fedbus.storage import InMemoryArtifactStore
from fedbus_executor import ProgressCallback, TrainingResult, TrainingTask
from fedbus_trainer import HANDLERS, Deps, SubmittedLog, load_local_datasets, on_round_assigned
from fedbus_trainer.site import SiteGate
from fedbus_trainer.site_log import SiteLog
from fedbus_trainer.site_policy import SitePolicy

from .fakes import FakeGrants

Make = Callable[..., RoundAssigned]
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
GLOBAL = ModelRef(object_key="jobs/job-1/round-1/global/aa", size_bytes=10, sha256="aa" * 32)


def refuse_to_train(task: TrainingTask, progress: ProgressCallback) -> TrainingResult:
    raise AssertionError("a declined round must not train")


@pytest.fixture
def grants() -> FakeGrants:
    return FakeGrants(InMemoryArtifactStore())


def make_deps(client_file: Path, grants: FakeGrants, bus: InMemoryBus, policy: SitePolicy,
              log: SiteLog | None = None) -> Deps:  # fmt: skip
    return Deps(
        client_id="c1", datasets=load_local_datasets({"digits": client_file}), artifacts=grants,
        publisher=bus, submitted=SubmittedLog(), device="cpu", train=refuse_to_train,
        site=SiteGate(policy, log or SiteLog(), clock=lambda: NOW),
    )  # fmt: skip


def local_dp(epsilon: float) -> PrivacySpec:
    return PrivacySpec(
        mode=PrivacyMode.LOCAL_DP, target_epsilon=epsilon, delta=1e-5, noise_multiplier=1.0,
        clipping_norm=1.0,
    )  # fmt: skip


async def test_a_job_asking_too_large_an_epsilon_is_declined_and_nothing_else_happens(
    client_file: Path, grants: FakeGrants, round_assigned: Make, tmp_path: Path
) -> None:
    bus = InMemoryBus()
    log = SiteLog(tmp_path / "site-rounds.json")
    deps = make_deps(client_file, grants, bus, SitePolicy(max_epsilon=1.0), log)
    event = round_assigned(round=2, privacy=local_dp(8.0), global_model=GLOBAL)

    await bus.publish(event)
    await bus.drain(HANDLERS.bind(deps))

    (declined,) = bus.events("round.declined")
    assert isinstance(declined, RoundDeclined)
    assert (declined.job_id, declined.round, declined.client_id) == ("job-1", 2, "c1")
    assert declined.started_event_id == event.started_event_id
    assert [r.code for r in declined.reasons] == ["epsilon_too_large"]
    assert "epsilon 8" in declined.reasons[0].message
    assert "at most 1 (max_epsilon)" in declined.reasons[0].message
    assert declined.retry_after_s is None
    assert declined.traceparent.split("-")[1] == event.traceparent.split("-")[1]
    # The aggregator grants the same attempt again: the same answer, the same event id.
    again = round_assigned(round=2, privacy=local_dp(8.0), global_model=GLOBAL,
                           started_event_id=event.started_event_id)  # fmt: skip
    assert await on_round_assigned(again, deps=deps) == [declined]
    # Not downloaded, not trained (refuse_to_train), not uploaded, no progress, not counted.
    assert grants.requests == []
    assert bus.events("update.submitted") == []
    assert bus.events("progress") == []
    assert not log.accepted(event.started_event_id)


async def test_a_model_off_the_list_and_the_daily_limit(
    client_file: Path, grants: FakeGrants, round_assigned: Make
) -> None:
    bus = InMemoryBus()
    deps = make_deps(client_file, grants, bus, SitePolicy(allowed_models=["cnn"]))

    await bus.publish(round_assigned(model="mlp"))
    await bus.drain(HANDLERS.bind(deps))

    (declined,) = bus.events("round.declined")
    assert isinstance(declined, RoundDeclined)
    assert [r.code for r in declined.reasons] == ["model_not_allowed"]
    assert grants.requests == []


async def test_an_accepted_round_trains_and_is_counted_once(
    client_file: Path, grants: FakeGrants, round_assigned: Make
) -> None:
    bus = InMemoryBus()
    log = SiteLog()
    deps = make_deps(client_file, grants, bus, SitePolicy(max_rounds_per_day=1), log)
    trained: list[TrainingTask] = []

    def train(task: TrainingTask, progress: ProgressCallback) -> TrainingResult:
        trained.append(task)
        raise AssertionError("stop here: the round was let through")

    deps.train = train
    first = round_assigned()
    with pytest.raises(AssertionError, match="let through"):
        await on_round_assigned(first, deps=deps)
    # The aggregator grants the same attempt again (or Kafka redelivers it): not a new round.
    with pytest.raises(AssertionError, match="let through"):
        await on_round_assigned(first, deps=deps)
    out = await on_round_assigned(round_assigned(round=2), deps=deps)

    assert len(trained) == 2
    assert len(log.history("job-1", NOW)) == 1
    (declined,) = out
    assert isinstance(declined, RoundDeclined)
    assert [r.code for r in declined.reasons] == ["daily_round_limit"]
    assert declined.retry_after_s == 24 * 3600
