"""In-process fan-out of a job's events to its live ``/events`` streams."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from fedbus_gateway.store import StoredEvent

__all__ = ["JobEventHub"]

log = logging.getLogger(__name__)


class JobEventHub:
    """Subscribers per job id, each with its own bounded queue.

    A subscriber that falls ``max_queue`` events behind is dropped (its queue receives
    ``None``) rather than slowing the consumer that feeds every stream; it resumes from the
    store with ``Last-Event-ID``.
    """

    def __init__(self, max_queue: int = 1000) -> None:
        self._subs: dict[str, set[asyncio.Queue[StoredEvent | None]]] = {}
        self._max = max_queue

    def subscribers(self, job_id: str) -> int:
        """How many streams follow ``job_id``."""
        return len(self._subs.get(job_id, ()))

    @contextmanager
    def subscribe(self, job_id: str) -> Iterator[asyncio.Queue[StoredEvent | None]]:
        """A queue receiving ``job_id``'s events while the block runs (None: dropped)."""
        queue: asyncio.Queue[StoredEvent | None] = asyncio.Queue(maxsize=self._max + 1)
        self._subs.setdefault(job_id, set()).add(queue)
        try:
            yield queue
        finally:
            subs = self._subs.get(job_id, set())
            subs.discard(queue)
            if not subs:
                self._subs.pop(job_id, None)

    def publish(self, stored: StoredEvent) -> None:
        """Hand a recorded event to every stream of its job."""
        job_id = stored.event.job_id
        for queue in list(self._subs.get(job_id, ())):
            if queue.qsize() >= self._max:
                log.warning("dropping a slow event stream of job %s", job_id)
                self._subs[job_id].discard(queue)
                queue.put_nowait(None)
                continue
            queue.put_nowait(stored)
