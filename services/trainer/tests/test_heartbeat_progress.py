"""Heartbeats (content, the immediate first beat) and the progress relay (thread to loop)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from fedbus.bus import InMemoryBus
from fedbus.events import (
    DatasetInfo,
    Phase,
    Progress,
    RoundAssigned,
    TrainerStatus,
    TrainingConfig,
)
from fedbus_executor import ProgressEvent
from fedbus_trainer import Activity, heartbeat_event, heartbeat_loop
from fedbus_trainer.progress import ProgressRelay, TrainingAbortedError

DATASETS = [DatasetInfo(name="digits", num_samples=360)]


def test_heartbeat_says_who_what_and_whether_busy() -> None:
    activity = Activity()
    idle = heartbeat_event(
        client_id="c1", device="cpu", datasets=DATASETS, activity=activity, interval_seconds=2
    )
    assert (idle.client_id, idle.job_id, idle.device) == ("c1", "", "cpu")
    assert idle.datasets == DATASETS
    assert (idle.status, idle.capacity, idle.active_jobs) == (TrainerStatus.IDLE, 1, [])
    assert idle.interval_seconds == 2
    assert idle.kafka_key() == b"c1"

    activity.begin("job-9")
    busy = heartbeat_event(
        client_id="c1", device="cpu", datasets=DATASETS, activity=activity, interval_seconds=2
    )
    assert (busy.status, busy.active_jobs) == (TrainerStatus.BUSY, ["job-9"])
    activity.end("job-9")
    assert activity.status is TrainerStatus.IDLE


async def test_heartbeat_loop_beats_at_once_and_then_every_interval() -> None:
    bus = InMemoryBus()
    naps: list[float] = []
    beats_before_nap: list[int] = []
    third_nap = asyncio.Event()

    async def sleep(seconds: float) -> None:  # the loop's wait, without the wall clock
        naps.append(seconds)
        beats_before_nap.append(len(bus.events("trainer.heartbeat")))
        if len(naps) == 3:
            third_nap.set()
            await asyncio.Event().wait()  # parked here until cancelled

    task = asyncio.create_task(
        heartbeat_loop(
            bus,
            client_id="c1",
            device="cpu",
            datasets=DATASETS,
            activity=Activity(),
            interval_seconds=2,
            sleep=sleep,
        )
    )
    try:
        await asyncio.wait_for(third_nap.wait(), timeout=10)
    finally:
        task.cancel()

    assert beats_before_nap == [1, 2, 3]  # one beat before any wait, then one per interval
    assert naps == [2, 2, 2]


def _train_report(step: int, total: int = 10, epoch: int = 1) -> ProgressEvent:
    return ProgressEvent(
        "train", f"step {step}", {"epoch": epoch, "step": step, "total": total, "loss": 0.5}
    )


async def test_relay_publishes_reports_from_a_thread_in_order_and_throttled(
    round_assigned: Callable[..., RoundAssigned],
) -> None:
    bus = InMemoryBus()
    now = [0.0]
    relay = ProgressRelay(
        round_assigned(),
        client_id="c1",
        publisher=bus,
        loop=asyncio.get_running_loop(),
        min_interval_s=0.5,
        clock=lambda: now[0],
    )
    pump = asyncio.create_task(relay.run())

    def train() -> None:
        for step in range(1, 11):  # 10 steps, 0.2 s apart: at most one report per 0.5 s
            relay(_train_report(step))
            now[0] += 0.2
        relay(ProgressEvent("epoch_end", "epoch 1/1 done", {"epoch": 1, "loss": 0.4}))

    thread = threading.Thread(target=train)
    thread.start()
    await asyncio.to_thread(thread.join)
    relay.close()
    await pump

    events = [e for e in bus.events("progress") if isinstance(e, Progress)]
    steps = [e.step for e in events if e.step is not None]
    assert steps == [1, 4, 7, 10]
    assert all(e.phase is Phase.TRAINING for e in events)
    assert all(e.total == 10 for e in events if e.step is not None)
    assert events[0].metrics == {"loss": 0.5}
    assert events[-1].message == "epoch 1/1 done"


async def test_relay_counts_steps_over_all_epochs_and_stops_an_aborted_run(
    round_assigned: Callable[..., RoundAssigned],
) -> None:
    bus = InMemoryBus()
    relay = ProgressRelay(
        round_assigned(training=TrainingConfig(local_epochs=3)),
        client_id="c1",
        publisher=bus,
        loop=asyncio.get_running_loop(),
        min_interval_s=0.0,
    )
    pump = asyncio.create_task(relay.run())
    relay(_train_report(4, total=10, epoch=2))
    relay.abort()
    with pytest.raises(TrainingAbortedError):
        relay(_train_report(5, total=10, epoch=2))
    relay.close()
    await pump
    (event,) = bus.events("progress")
    assert isinstance(event, Progress)
    assert (event.step, event.total) == (14, 30)
