"""Liveness: what the trainer is doing now, and the ``trainer.heartbeat`` it publishes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from fedbus.bus import Publisher
from fedbus.events import DatasetInfo, ModelCapability, TrainerHeartbeat, TrainerStatus

__all__ = ["Activity", "heartbeat_event", "heartbeat_loop"]

log = logging.getLogger(__name__)


class Activity:
    """The jobs being trained right now (the trainer runs one task at a time)."""

    capacity = 1

    def __init__(self) -> None:
        self._jobs: list[str] = []

    def begin(self, job_id: str) -> None:
        """A task of ``job_id`` started."""
        self._jobs.append(job_id)

    def end(self, job_id: str) -> None:
        """A task of ``job_id`` ended (successfully or not)."""
        if job_id in self._jobs:
            self._jobs.remove(job_id)

    @property
    def active_jobs(self) -> list[str]:
        """Jobs in training, without repeats."""
        return list(dict.fromkeys(self._jobs))

    @property
    def status(self) -> TrainerStatus:
        """``busy`` while training, else ``idle``."""
        return TrainerStatus.BUSY if self._jobs else TrainerStatus.IDLE


def heartbeat_event(
    *,
    client_id: str,
    device: str,
    datasets: Iterable[DatasetInfo],
    activity: Activity,
    interval_seconds: int,
    models: Iterable[ModelCapability] = (),
) -> TrainerHeartbeat:
    """The heartbeat for now (keyed by client id, empty job id)."""
    return TrainerHeartbeat.create(
        source="trainer",
        job_id="",
        client_id=client_id,
        device=device,
        datasets=list(datasets),
        models=list(models),
        status=activity.status,
        capacity=activity.capacity,
        active_jobs=activity.active_jobs,
        interval_seconds=interval_seconds,
    )


async def heartbeat_loop(
    publisher: Publisher,
    *,
    client_id: str,
    device: str,
    datasets: list[DatasetInfo],
    activity: Activity,
    interval_seconds: int,
    models: list[ModelCapability] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Publish one heartbeat at once, then one every ``interval_seconds``, until cancelled.

    A failed publish is logged and retried on the next beat: a missed beat is harmless,
    a dead heartbeat task would make the trainer look gone. ``sleep`` waits between beats
    (tests pass one that does not wait for the wall clock).
    """
    while True:
        event = heartbeat_event(
            client_id=client_id,
            device=device,
            datasets=datasets,
            activity=activity,
            interval_seconds=interval_seconds,
            models=models or [],
        )
        try:
            await publisher.publish(event)
        except Exception as exc:
            log.warning("heartbeat not published: %s", exc)
        await sleep(interval_seconds)
