"""A micro-batcher: concurrent requests for one model share one forward pass.

The first request to arrive opens a batch; the batch runs when ``max_rows`` rows are waiting
or ``max_wait_s`` after that request arrived, whichever comes first. While a forward pass
runs, new requests queue; when it ends they have waited already, so the next batch runs at
once with all of them (up to ``max_rows``). One forward pass at a time per batcher, off the
event loop (``run``, a thread by default). A request larger than ``max_rows`` runs alone.
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
        How long the first request of a batch waits for others.
    run
        How ``forward`` is called: in a thread by default; tests pass a direct call.
    """

    def __init__(
        self,
        forward: Forward,
        *,
        max_rows: int = 64,
        max_wait_s: float = 0.002,
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
        while self._queue:
            deadline = self._queue[0].arrived + self.max_wait_s
            remaining = deadline - time.monotonic()
            if self._rows_waiting < self.max_rows and remaining > 0:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), remaining)
            batch = self._take()
            if batch:
                await self._answer(batch)

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
