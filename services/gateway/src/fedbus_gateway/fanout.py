"""In-process fan-out of a job's events to its live ``/events`` streams."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from fedbus.events import Event

__all__ = ["JobEventHub"]

log = logging.getLogger(__name__)


class JobEventHub:
    """Subscribers per job id, each with its own bounded queue.

    A subscriber that falls ``max_queue`` events behind is dropped (its queue receives
    ``None``) rather than slowing the consumer that feeds every stream.
    """

    def __init__(self, max_queue: int = 1000) -> None:
        self._subs: dict[str, set[asyncio.Queue[Event | None]]] = {}
        self._max = max_queue

    def subscribers(self, job_id: str) -> int:
        """How many streams follow ``job_id``."""
        return len(self._subs.get(job_id, ()))

    @contextmanager
    def subscribe(self, job_id: str) -> Iterator[asyncio.Queue[Event | None]]:
        """A queue receiving ``job_id``'s events while the block runs (None: dropped)."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=self._max + 1)
        self._subs.setdefault(job_id, set()).add(queue)
        try:
            yield queue
        finally:
            subs = self._subs.get(job_id, set())
            subs.discard(queue)
            if not subs:
                self._subs.pop(job_id, None)

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every stream of its job."""
        for queue in list(self._subs.get(event.job_id, ())):
            if queue.qsize() >= self._max:
                log.warning("dropping a slow event stream of job %s", event.job_id)
                self._subs[event.job_id].discard(queue)
                queue.put_nowait(None)
                continue
            queue.put_nowait(event)
