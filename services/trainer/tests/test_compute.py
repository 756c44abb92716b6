"""Training runs in the trainer's compute thread, below the event loop's priority."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from fedbus.bus import InMemoryBus
from fedbus.events import RoundAssigned, UpdateSubmitted
from fedbus.storage import InMemoryArtifactStore
from fedbus_executor import ProgressCallback, TrainingResult, TrainingTask
from fedbus_trainer import HANDLERS, Deps, ExecutorTrainer, SubmittedLog, load_local_datasets
from fedbus_trainer.compute import compute_executor, lower_thread_priority
from fedbus_trainer.settings import TrainerSettings

from .fakes import FakeGrants

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux's")


def _nice_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@linux_only
def test_the_compute_thread_runs_niced_and_the_caller_does_not() -> None:
    before = _nice_of_this_thread()
    with compute_executor(5) as pool:
        inside = pool.submit(_nice_of_this_thread).result()
    assert inside == min(19, before + 5)
    assert _nice_of_this_thread() == before  # only the worker thread was lowered


def test_nice_zero_leaves_the_thread_alone() -> None:
    assert lower_thread_priority(0) is None


@linux_only
def test_nice_is_capped_at_19() -> None:
    with compute_executor(40) as pool:
        assert pool.submit(_nice_of_this_thread).result() == 19


def test_the_setting_defaults_to_10_and_rejects_out_of_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FEDBUS_COMPUTE_NICE", raising=False)
    assert TrainerSettings(_env_file=None, client_id="c").compute_nice == 10  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="compute_nice"):
        TrainerSettings(client_id="c", compute_nice=20)


class ThreadRecordingTrainer:
    """The real executor; remembers which thread trained."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        self._train = ExecutorTrainer()

    def __call__(self, task: TrainingTask, progress: ProgressCallback) -> TrainingResult:
        self.threads.append(threading.current_thread().name)
        return self._train(task, progress)


async def test_the_handler_trains_in_the_compute_thread(
    client_file: Path, round_assigned: Callable[..., RoundAssigned]
) -> None:
    bus, recorder = InMemoryBus(), ThreadRecordingTrainer()
    with compute_executor(0) as pool:
        deps = Deps(
            client_id="c1",
            datasets=load_local_datasets({"digits": client_file}),
            artifacts=FakeGrants(InMemoryArtifactStore()),
            publisher=bus,
            submitted=SubmittedLog(),
            device="cpu",
            train=recorder,
            compute=pool,
        )
        await bus.publish(round_assigned())
        await bus.drain(HANDLERS.bind(deps))
    assert len(recorder.threads) == 1
    assert recorder.threads[0].startswith("fedbus-train")
    assert len([e for e in bus.events("update.submitted") if isinstance(e, UpdateSubmitted)]) == 1


def test_trainers_long_poll_longer_than_kafkas_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # idle between rounds, one round.started at a time: fewer idle fetches, same latency
    monkeypatch.delenv("FEDBUS_KAFKA_FETCH_MAX_WAIT_MS", raising=False)
    settings = TrainerSettings(_env_file=None, client_id="c")  # type: ignore[call-arg]
    assert settings.kafka_fetch_max_wait_ms == 1000
