"""A micro-batcher: concurrent requests for one model share one forward pass.

When the model is idle, a request's batch runs as soon as the event loop has taken in what
arrived with it (one pass of the loop), with every request then waiting: no timer. While a
forward pass runs, new requests queue; when it ends, the next batch runs at once with all of
them (up to ``max_rows``). So the batches grow with the load by themselves, and a request
never waits for others that may not come. One forward pass at a time per batcher, off the
event loop (``run``, a thread by default). A request larger than ``max_rows`` runs alone.

``max_wait_s`` above 0 brings back a flush window: a batch of fewer than ``max_rows`` rows
then waits until ``max_wait_s`` after its first request arrived. It costs every lone request
that wait and, for a model whose forward pass costs nearly as much per row in a small batch
as in a large one (the MNIST CNN on a CPU core), buys little; ``bench/predict_latency.py``
measures it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Forward", "MicroBatcher"]

Forward = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
"""Rows in, one output row per input row (a blocking call: it runs off the event loop)."""

Runner = Callable[[Forward, npt.NDArray[np.float32]], Awaitable[npt.NDArray[np.float32]]]


async def _in_thread(forward: Forward, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return await asyncio.to_thread(forward, rows)


@dataclass
class _Waiting:
    rows: npt.NDArray[np.float32]
    arrived: float
    answer: asyncio.Future[npt.NDArray[np.float32]]


class MicroBatcher:
    """Collects concurrent :meth:`submit` calls into batches of at most ``max_rows`` rows.

    Parameters
    ----------
    forward
        The model: ``(n, ...)`` rows in, ``(n, ...)`` outputs out.
    max_rows
        Rows per forward pass at most (a larger request runs alone).
    max_wait_s
        How long the first request of a batch waits for others when fewer than ``max_rows``
        rows wait (0, the default: not at all, the batch runs when the model is free).
    run
        How ``forward`` is called: in a thread by default; tests pass a direct call.
    """

    def __init__(
        self,
        forward: Forward,
        *,
        max_rows: int = 64,
        max_wait_s: float = 0.0,
        run: Runner = _in_thread,
    ) -> None:
        if max_rows < 1 or max_wait_s < 0:
            raise ValueError("max_rows must be at least 1 and max_wait_s not negative")
        self._forward, self._run = forward, run
        self.max_rows, self.max_wait_s = max_rows, max_wait_s
        self._queue: deque[_Waiting] = deque()
        self._rows_waiting = 0
        self._full = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self.batches: deque[int] = deque(maxlen=1000)
        """Rows of each recent forward pass (for tests and the benchmark)."""

    async def submit(self, rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The outputs for ``rows``, computed in a batch with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(rows, time.monotonic(), loop.create_future())
        self._queue.append(waiting)
        self._rows_waiting += len(rows)
        if self._rows_waiting >= self.max_rows:
            self._full.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work())
        return await waiting.answer

    async def _work(self) -> None:
        # One pass of the event loop: requests that arrived with the first one join it.
        await asyncio.sleep(0)
        while self._queue:
            if self.max_wait_s > 0:
                await self._wait_for_more()
            batch = self._take()
            if batch:
                await self._answer(batch)

    async def _wait_for_more(self) -> None:
        """Until ``max_rows`` rows wait or ``max_wait_s`` after the first one arrived."""
        remaining = self._queue[0].arrived + self.max_wait_s - time.monotonic()
        if self._rows_waiting < self.max_rows and remaining > 0:
            self._full.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), remaining)

    def _take(self) -> list[_Waiting]:
        batch: list[_Waiting] = []
        rows = 0
        while self._queue:
            head = self._queue[0]
            if batch and rows + len(head.rows) > self.max_rows:
                break
            self._queue.popleft()
            self._rows_waiting -= len(head.rows)
            if head.answer.done():  # its caller went away (cancelled)
                continue
            batch.append(head)
            rows += len(head.rows)
        return batch

    async def _answer(self, batch: list[_Waiting]) -> None:
        rows = batch[0].rows if len(batch) == 1 else np.concatenate([w.rows for w in batch])
        self.batches.append(len(rows))
        try:
            out = await self._run(self._forward, rows)
            if len(out) != len(rows):
                raise RuntimeError(f"the model answered {len(out)} rows for {len(rows)}")
        except Exception as exc:  # every caller of the batch gets the failure
            for waiting in batch:
                if not waiting.answer.done():
                    waiting.answer.set_exception(exc)
            return
        start = 0
        for waiting in batch:
            end = start + len(waiting.rows)
            if not waiting.answer.done():
                waiting.answer.set_result(out[start:end])
            start = end
