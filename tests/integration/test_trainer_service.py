"""Two trainer processes on the real stack: heartbeats, a round for one of them, a round 2.

Each trainer runs as a data owner would: ``FEDBUS_ENV_FILE`` names its own env file from
``stack.py principal trainer`` (its Kafka principal when the stack has SASL; no DSN, no MinIO
keys) and nothing else of this session's ``FEDBUS_*`` reaches it. The test plays the
aggregator: it grants each round with the aggregator's own code (presigned URLs signed with
the stack's MinIO credentials) and publishes the ``round.assigned`` on each trainer's topic.
Each trainer holds one digits partition under a unique dataset name and a unique client id,
so its topic and consumer group are new.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fedbus.bus import EventProducer, ensure_topics
from fedbus.events import (
    Event,
    ModelRef,
    Phase,
    PrivacySpec,
    Progress,
    RoundAssigned,
    RoundStarted,
    StrategySpec,
    TrainerHeartbeat,
    TrainingConfig,
    UpdateSubmitted,
)
from fedbus.settings import FedbusSettings
from fedbus.storage import S3ArtifactStore, sha256_hex, update_key
from fedbus_aggregator.grants import assignments
from fedbus_executor import DataRef, PrepareOptions, initial_weights, prepare_dataset

from .harness import EventWatcher, ServiceProcess, trainer_env, unique

TOPICS = ["trainer.heartbeat", "progress", "update.submitted"]
SEED = 5


@pytest.fixture
def digits(tmp_path: Path) -> Path:
    return prepare_dataset("digits", tmp_path / "data", PrepareOptions(num_clients=2, seed=0)).root


@pytest.fixture
def trainers(tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    for proc in started:
        proc.stop()


def _rows(root: Path, rel: str) -> int:
    return int(json.loads((root / "manifest.json").read_text())["files"][rel]["rows"])


def _start_trainer(
    settings: FedbusSettings, tmp_path: Path, client: str, dataset: str, data: Path
) -> ServiceProcess:
    """Start a trainer with its own env file (and principal), its group ``trainer-<client>``."""
    return ServiceProcess.start(
        client,
        "fedbus_trainer",
        log_dir=tmp_path,
        args=["--client-id", client, "--data", f"{dataset}={data}", "--device", "cpu"],
        base_env=trainer_env(settings, client),
        env={"FEDBUS_HEARTBEAT_SECONDS": "1", "FEDBUS_STATE_DIR": str(tmp_path / "state")},
    )


def _grants(settings: FedbusSettings, started: RoundStarted) -> list[RoundAssigned]:
    """What the aggregator sends for ``started``: its own code, MinIO's real signatures."""
    presigner = S3ArtifactStore.from_settings(settings)
    return assignments(started, started.selected_clients, presigner=presigner,
                       now=datetime.now(UTC), grace_s=60)  # fmt: skip


def _round(
    job: str, rnd: int, dataset: str, selected: list[str], g: ModelRef | None
) -> RoundStarted:
    return RoundStarted.create(
        source="test",
        job_id=job,
        round=rnd,
        selected_clients=selected,
        min_clients=1,
        deadline=datetime.now(UTC) + timedelta(minutes=5),
        global_model=g,
        model="mlp",
        dataset=dataset,
        training=TrainingConfig(local_epochs=1, batch_size=32, learning_rate=0.05),
        strategy=StrategySpec(),
        privacy=PrivacySpec(),
        seed=SEED,
    )


def _update_of(job: str, rnd: int, client: str) -> Callable[[Event], bool]:
    def match(e: Event) -> bool:
        return (
            isinstance(e, UpdateSubmitted)
            and e.job_id == job
            and e.round == rnd
            and e.client_id == client
        )

    return match


async def _check_update(
    store: S3ArtifactStore, update: UpdateSubmitted, shapes: dict[str, tuple[int, ...]]
) -> None:
    raw = await store.get_bytes(update.update)  # decrypted with the stack's keyring
    assert sha256_hex(raw) == update.update.sha256
    assert update.update.object_key == update_key(update.job_id, update.round, update.client_id)
    delta = await store.get_tensors(update.update)
    assert {k: v.shape for k, v in delta.items()} == shapes
    assert update.num_samples > 0
    assert {"loss", "accuracy", "duration_s"} <= set(update.metrics)


async def test_two_trainers_announce_themselves_and_train_only_when_selected(
    settings: FedbusSettings, tmp_path: Path, digits: Path, trainers: list[ServiceProcess]
) -> None:
    await ensure_topics(settings)
    store = S3ArtifactStore.from_settings(settings)
    await store.ensure_bucket()
    dataset, job = unique("digits"), unique("job-trainer")
    a, b = unique("trn-a"), unique("trn-b")
    files = {a: "clients/client-000.parquet", b: "clients/client-001.parquet"}
    spec = DataRef(path=str(digits / files[a])).resolve_spec()
    start = initial_weights("mlp", SEED, spec)
    shapes = {k: v.shape for k, v in start.items()}

    async with (
        EventWatcher(settings, TOPICS) as watch,
        EventProducer(settings, client_id="test-trainer") as producer,
    ):
        for client in (a, b):
            trainers.append(
                _start_trainer(settings, tmp_path, client, dataset, digits / files[client])
            )
        for client in (a, b):

            def beat_of(e: Event, c: str = client) -> bool:
                return isinstance(e, TrainerHeartbeat) and e.client_id == c

            beat = await watch.wait_for(beat_of, limit_s=180)
            assert isinstance(beat, TrainerHeartbeat)
            [held] = beat.datasets
            assert (held.name, held.num_samples) == (dataset, _rows(digits, files[client]))
            assert (held.feature_shape, len(held.classes)) == ([1, 8, 8], 10)
            assert {"cnn", "mlp"} <= set(held.models)  # what it can build for digits
            assert {"cnn", "mlp"} <= {m.name for m in beat.models}
            assert (beat.device, beat.capacity, beat.interval_seconds) == ("cpu", 1, 1)

        # Round 1 selects only a; no global model yet.
        await producer.publish_many(_grants(settings, _round(job, 1, dataset, [a], None)))
        first = await watch.wait_for(_update_of(job, 1, a), limit_s=180)
        assert isinstance(first, UpdateSubmitted)
        await _check_update(store, first, shapes)
        assert first.num_samples == _rows(digits, files[a])
        ours = [e for e in watch.seen if isinstance(e, Progress) and e.job_id == job]
        assert any(e.phase is Phase.TRAINING and e.client_id == a for e in ours)
        assert any(e.phase is Phase.DOWNLOADING and e.client_id == a for e in ours)

        # Round 2 from a global model we upload; both selected this time.
        global_ref = await store.put_tensors(
            initial_weights("mlp", SEED + 1, spec), prefix=f"jobs/{job}/round-1/global"
        )
        await producer.publish_many(_grants(settings, _round(job, 2, dataset, [a, b], global_ref)))
        for client in (a, b):
            update = await watch.wait_for(_update_of(job, 2, client), limit_s=180)
            assert isinstance(update, UpdateSubmitted)
            await _check_update(store, update, shapes)
        await watch.poll()

    updates = [e for e in watch.seen if isinstance(e, UpdateSubmitted) and e.job_id == job]
    assert sorted((e.round, e.client_id) for e in updates) == sorted([(1, a), (2, a), (2, b)])
    b_round_one = [e for e in watch.seen if e.job_id == job and getattr(e, "client_id", None) == b
                   and getattr(e, "round", None) == 1]  # fmt: skip
    assert b_round_one == []
    for proc in trainers:
        assert proc.alive(), proc.text()[-2000:]


async def test_a_restarted_trainer_answers_a_redelivered_round_without_training_again(
    settings: FedbusSettings, tmp_path: Path, digits: Path, trainers: list[ServiceProcess]
) -> None:
    await ensure_topics(settings)
    dataset, job, client = unique("digits"), unique("job-trainer"), unique("trn-r")
    data = digits / "clients" / "client-000.parquet"
    started = _round(job, 1, dataset, [client], None)
    [assigned] = _grants(settings, started)

    async with (
        EventWatcher(settings, TOPICS) as watch,
        EventProducer(settings, client_id="test-trainer") as producer,
    ):
        trainers.append(_start_trainer(settings, tmp_path, client, dataset, data))
        await producer.publish(assigned)
        first = await watch.wait_for(_update_of(job, 1, client), limit_s=180)
        trainers[0].stop()
        assert "trainer stopped" in trainers[0].text()

        # The same assignment again (a redelivery), and the same round.started granted anew
        # (new URLs), to a new process with the same state.
        [regranted] = _grants(settings, started)
        await producer.publish_many([assigned, regranted])
        trainers.append(_start_trainer(settings, tmp_path, client, dataset, data))
        seen_before = len(watch.seen)
        again = await watch.wait_for(
            lambda e: _update_of(job, 1, client)(e) and e is not first, limit_s=180
        )
        await watch.wait_for(
            lambda e: _update_of(job, 1, client)(e) and e is not first and e is not again,
            limit_s=180,
        )
        await watch.poll()

    assert again == first  # the stored event, same event id and object
    after = watch.seen[seen_before:]
    # Other services on the shared broker may speak about this job; the trainer must not.
    assert not [e for e in after if isinstance(e, Progress) and e.client_id == client]
