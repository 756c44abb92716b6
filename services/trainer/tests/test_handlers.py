"""The round.started handler end to end on a real tiny dataset, with in-memory bus and store."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from fedbus.bus import InMemoryBus
from fedbus.events import (
    Phase,
    PrivacyMode,
    PrivacySpec,
    Progress,
    RoundAssigned,
    TrainingConfig,
    UpdateSubmitted,
)
from fedbus.storage import InMemoryArtifactStore, tensors_from_bytes
from fedbus_executor import (
    ProgressCallback,
    TrainingResult,
    TrainingTask,
    build_model,
    initial_weights,
)
from fedbus_trainer import (
    HANDLERS,
    Deps,
    ExecutorTrainer,
    SubmittedLog,
    load_local_datasets,
    on_round_assigned,
)

from .fakes import FakeGrants

Make = Callable[..., RoundAssigned]


class CountingTrainer:
    """The real executor, counting how often it is asked to train."""

    def __init__(self) -> None:
        self.calls: list[TrainingTask] = []
        self.results: list[TrainingResult] = []
        self._train = ExecutorTrainer()

    def __call__(self, task: TrainingTask, progress: ProgressCallback) -> TrainingResult:
        self.calls.append(task)
        self.results.append(self._train(task, progress))
        return self.results[-1]


@pytest.fixture
def bus() -> InMemoryBus:
    return InMemoryBus()


@pytest.fixture
def store() -> InMemoryArtifactStore:
    return InMemoryArtifactStore()


@pytest.fixture
def trainer() -> CountingTrainer:
    return CountingTrainer()


@pytest.fixture
def deps(
    client_file: Path, bus: InMemoryBus, store: InMemoryArtifactStore, trainer: CountingTrainer
) -> Deps:
    return Deps(
        client_id="c1",
        datasets=load_local_datasets({"digits": client_file}),
        artifacts=FakeGrants(store),
        publisher=bus,
        submitted=SubmittedLog(),
        device="cpu",
        train=trainer,
        progress_interval_s=0.0,
    )


def _only_update(events: Sequence[object]) -> UpdateSubmitted:
    updates = [e for e in events if isinstance(e, UpdateSubmitted)]
    assert len(updates) == 1
    return updates[0]


async def test_round_one_trains_and_submits_a_verifiable_delta(
    deps: Deps, bus: InMemoryBus, store: InMemoryArtifactStore, round_assigned: Make
) -> None:
    event = round_assigned()
    await bus.publish(event)
    await bus.drain(HANDLERS.bind(deps))

    update = _only_update(bus.events("update.submitted"))
    assert (update.job_id, update.round, update.client_id) == ("job-1", 1, "c1")
    assert update.update.object_key == event.update_key == "jobs/job-1/round-1/updates/c1/update"
    assert update.num_samples == deps.datasets["digits"].num_samples > 0
    assert set(update.metrics) == {"loss", "accuracy", "duration_s"}
    assert update.dp is None
    assert update.traceparent.split("-")[1] == event.traceparent.split("-")[1]

    delta = await store.get_tensors(update.update)  # verifies size and SHA-256
    model = build_model("mlp", deps.datasets["digits"].spec)
    assert {k: v.shape for k, v in delta.items()} == {
        k: tuple(v.shape) for k, v in model.state_dict().items()
    }
    assert all(v.dtype == np.float32 for v in delta.values())
    assert any(np.abs(v).max() > 0 for v in delta.values())

    phases = [e.phase for e in bus.events("progress") if isinstance(e, Progress)]
    assert phases[0] is Phase.DOWNLOADING
    assert Phase.TRAINING in phases
    assert phases[-1] is Phase.COMPLETED
    training = [e for e in bus.events("progress") if isinstance(e, Progress) and e.step]
    assert training[-1].step == training[-1].total
    assert all(
        isinstance(e, Progress) and e.client_id == "c1" and e.round == 1
        for e in bus.events("progress")
    )


async def test_delta_is_local_minus_the_shared_initial_weights(
    deps: Deps, store: InMemoryArtifactStore, round_assigned: Make, trainer: CountingTrainer
) -> None:
    # Round 1 starts from the weights every process derives from model and seed, so the
    # aggregator can rebuild the trained model as initial + delta.
    out = await on_round_assigned(round_assigned(seed=7), deps=deps)
    delta = await store.get_tensors(_only_update(out).update)
    start = initial_weights("mlp", 7, deps.datasets["digits"].spec)
    local = trainer.results[0].weights
    assert set(delta) == set(start) == set(local)
    for name in start:
        np.testing.assert_allclose(delta[name], local[name].numpy() - start[name], atol=1e-6)


async def test_round_one_builds_the_jobs_model_options(
    deps: Deps, store: InMemoryArtifactStore, round_assigned: Make, trainer: CountingTrainer
) -> None:
    # Not the defaults (hidden [128]): the aggregator builds round 1 with the job's options,
    # so a trainer that did not would send a delta of another shape.
    event = round_assigned(seed=7, model_options={"hidden": [8, 4]})
    out = await on_round_assigned(event, deps=deps)
    delta = await store.get_tensors(_only_update(out).update)
    start = initial_weights("mlp", 7, deps.datasets["digits"].spec, hidden=[8, 4])
    assert {k: v.shape for k, v in delta.items()} == {k: v.shape for k, v in start.items()}
    assert delta["1.weight"].shape[0] == 8
    started = tensors_from_bytes(trainer.calls[0].initial_weights or b"")
    assert all(np.array_equal(started[k], start[k]) for k in start)


async def test_a_later_round_starts_from_the_global_model(
    deps: Deps, store: InMemoryArtifactStore, round_assigned: Make, trainer: CountingTrainer
) -> None:
    spec = deps.datasets["digits"].spec
    global_weights = initial_weights("mlp", 99, spec)
    ref = await store.put_tensors(global_weights, prefix="jobs/job-1/round-1/global")
    out = await on_round_assigned(round_assigned(round=2, global_model=ref), deps=deps)
    update = _only_update(out)
    assert update.round == 2
    assert update.update.object_key == "jobs/job-1/round-2/updates/c1/update"
    assert trainer.calls[0].initial_weights is not None
    started = tensors_from_bytes(trainer.calls[0].initial_weights)
    assert all(np.array_equal(started[k], global_weights[k]) for k in global_weights)


async def test_an_assignment_for_another_client_is_ignored(
    deps: Deps, bus: InMemoryBus, round_assigned: Make, trainer: CountingTrainer
) -> None:
    out = await on_round_assigned(round_assigned(client_id="c2"), deps=deps)
    assert out == []
    assert bus.topics == {}
    assert trainer.calls == []


async def test_a_redelivered_round_is_not_trained_again(
    deps: Deps, round_assigned: Make, trainer: CountingTrainer
) -> None:
    event = round_assigned()
    first = _only_update(await on_round_assigned(event, deps=deps))
    again = await on_round_assigned(event, deps=deps)
    assert len(trainer.calls) == 1
    assert again == [first]  # the same event (same event id) again, nothing new


async def test_a_restarted_trainer_remembers_submitted_rounds(
    deps: Deps, tmp_path: Path, round_assigned: Make, trainer: CountingTrainer
) -> None:
    deps.submitted = SubmittedLog(tmp_path / "submitted.json")
    event = round_assigned()
    first = _only_update(await on_round_assigned(event, deps=deps))
    deps.submitted = SubmittedLog(tmp_path / "submitted.json")  # a new process reads the file
    assert await on_round_assigned(event, deps=deps) == [first]
    assert len(trainer.calls) == 1


async def test_a_retried_round_with_a_new_event_trains_again(
    deps: Deps, round_assigned: Make, trainer: CountingTrainer
) -> None:
    await on_round_assigned(round_assigned(), deps=deps)
    await on_round_assigned(round_assigned(), deps=deps)
    assert len(trainer.calls) == 2


async def test_a_dataset_it_does_not_hold_fails_softly(
    deps: Deps, round_assigned: Make, trainer: CountingTrainer
) -> None:
    out = await on_round_assigned(round_assigned(dataset="mnist"), deps=deps)
    assert len(out) == 1
    assert isinstance(out[0], Progress)
    assert out[0].phase is Phase.FAILED
    assert "'mnist'" in out[0].message
    assert trainer.calls == []


async def test_a_tampered_global_model_fails_softly(
    deps: Deps, store: InMemoryArtifactStore, round_assigned: Make, trainer: CountingTrainer
) -> None:
    ref = await store.put_tensors(
        initial_weights("mlp", 1, deps.datasets["digits"].spec), prefix="g"
    )
    store.objects[ref.object_key] = store.objects[ref.object_key][:-1] + b"\x00"
    out = await on_round_assigned(round_assigned(round=2, global_model=ref), deps=deps)
    assert [type(e) for e in out] == [Progress]
    assert isinstance(out[0], Progress)
    assert out[0].phase is Phase.FAILED
    assert "SHA-256" in out[0].message
    assert trainer.calls == []


async def test_central_dp_clips_the_uploaded_update(
    deps: Deps, store: InMemoryArtifactStore, round_assigned: Make
) -> None:
    privacy = PrivacySpec(mode=PrivacyMode.CENTRAL_DP, clipping_norm=0.01)
    out = await on_round_assigned(round_assigned(privacy=privacy), deps=deps)
    update = _only_update(out)
    delta = await store.get_tensors(update.update)
    norm = float(np.sqrt(sum(np.sum(np.square(v, dtype=np.float64)) for v in delta.values())))
    assert norm <= 0.01 * (1 + 1e-5)
    assert update.dp is not None
    assert (update.dp.noise_multiplier, update.dp.clipping_norm) == (0.0, 0.01)


@pytest.mark.slow
async def test_local_dp_runs_dp_sgd_and_reports_its_parameters(
    deps: Deps, round_assigned: Make
) -> None:
    privacy = PrivacySpec(mode=PrivacyMode.LOCAL_DP, noise_multiplier=1.0, clipping_norm=1.0)
    training = TrainingConfig(local_epochs=1, batch_size=64, learning_rate=0.1)
    out = await on_round_assigned(round_assigned(privacy=privacy, training=training), deps=deps)
    dp = _only_update(out).dp
    assert dp is not None
    assert (dp.noise_multiplier, dp.clipping_norm) == (1.0, 1.0)
    assert dp.steps > 0
    assert 0 < dp.sample_rate < 1
