"""Executor progress (called in the training thread) turned into ``progress`` events.

The executor calls its callback from the worker thread that trains. Events must be
published from the event loop, so the callback only hands a finished ``Progress`` event
to the loop (``call_soon_threadsafe``) and a task on the loop publishes them in order.
Training steps are throttled to one event per ``min_interval_s``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from fedbus.bus import Publisher
from fedbus.events import Phase, Progress, RoundAssigned, child_traceparent
from fedbus_executor import ProgressEvent

__all__ = ["ProgressRelay", "TrainingAbortedError", "progress_event"]

log = logging.getLogger(__name__)


class TrainingAbortedError(Exception):
    """Raised inside the training thread to stop a run whose caller went away."""


_PHASES = {"setup": Phase.LOADING_DATA, "train": Phase.TRAINING, "epoch_end": Phase.TRAINING}


def progress_event(
    cause: RoundAssigned,
    *,
    client_id: str,
    phase: Phase,
    message: str,
    step: int | None = None,
    total: int | None = None,
    metrics: dict[str, float] | None = None,
) -> Progress:
    """A ``progress`` event of this client in ``cause``'s round, continuing its trace."""
    return Progress.create(
        source="trainer",
        job_id=cause.job_id,
        traceparent=child_traceparent(cause.traceparent),
        round=cause.round,
        client_id=client_id,
        phase=phase,
        message=message,
        step=step,
        total=total,
        metrics=metrics or {},
    )


class ProgressRelay:
    """The executor's progress callback for one training run, and the task that publishes.

    Use ``relay`` as the callback (any thread), ``await run()`` on the loop beside the
    training, then ``close()`` from the loop when training returned.
    """

    def __init__(
        self,
        cause: RoundAssigned,
        *,
        client_id: str,
        publisher: Publisher,
        loop: asyncio.AbstractEventLoop,
        min_interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cause, self._client = cause, client_id
        self._publisher, self._loop = publisher, loop
        self._min_interval, self._clock = min_interval_s, clock
        self._last: float | None = None
        self._queue: asyncio.Queue[Progress | None] = asyncio.Queue()
        self._aborted = False

    def __call__(self, report: ProgressEvent) -> None:
        """Executor callback (training thread): convert, throttle, hand to the loop.

        Raises
        ------
        TrainingAbortedError
            After :meth:`abort`: the executor calls back every step, so this stops the run.
        """
        if self._aborted:
            raise TrainingAbortedError("training aborted: the trainer is stopping")
        event = self._convert(report)
        if event is None:
            return
        now = self._clock()
        if report.phase == "train":
            if self._last is not None and now - self._last < self._min_interval:
                return
            self._last = now
        self._loop.call_soon_threadsafe(self._queue.put_nowait, event)

    def abort(self) -> None:
        """Make the next callback stop the training run (the trainer is shutting down)."""
        self._aborted = True

    def close(self) -> None:
        """No more reports: ``run`` returns after publishing what is queued (loop thread).

        The end marker goes through the loop's callback queue too, so it lands after every
        report the training thread handed over before.
        """
        self._loop.call_soon(self._queue.put_nowait, None)

    async def run(self) -> None:
        """Publish queued events in order until :meth:`close`."""
        while (event := await self._queue.get()) is not None:
            try:
                await self._publisher.publish(event)
            except Exception as exc:
                log.warning("progress event not published: %s", exc)

    def _convert(self, report: ProgressEvent) -> Progress | None:
        phase = _PHASES.get(report.phase)
        if phase is None:
            return None
        d = report.details
        step, total = _global_step(d, epochs=self._cause.training.local_epochs)
        metrics = {
            k: float(v)
            for k in ("loss", "accuracy")
            if isinstance(v := d.get(k), int | float) and math.isfinite(v)
        }
        return progress_event(
            self._cause,
            client_id=self._client,
            phase=phase,
            message=report.message,
            step=step,
            total=total,
            metrics=metrics,
        )


def _global_step(
    details: dict[str, float | int | str], *, epochs: int
) -> tuple[int | None, int | None]:
    """Step and total over the whole run from the executor's per-epoch numbers."""
    step, total, epoch = details.get("step"), details.get("total"), details.get("epoch")
    if not isinstance(step, int) or not isinstance(total, int):
        return None, None
    epochs_before = epoch - 1 if isinstance(epoch, int) and epoch >= 1 else 0
    return epochs_before * total + step, epochs * total
