"""The delivery rules for one decoded event, shared by the Kafka runner and the in-memory bus.

:class:`~fedbus.bus.ConsumerRunner` and :class:`~fedbus.bus.InMemoryBus` both hand each
event to :meth:`DeliveryRules.deliver`, so a handler test on the in-memory bus sees what the
service sees on Kafka:

1. An event id the consumer group already handled (or dead-lettered) is skipped.
2. The handler runs; :class:`~fedbus.errors.RetryableError` is retried with bounded
   exponential backoff, :class:`~fedbus.errors.NonRetryableError` (or retries spent) is
   dead-lettered with the reason; any other exception propagates (the process crashes,
   uncommitted, and its supervisor restarts it).
3. The events the handler returned are published, and only then is the event id recorded:
   handled or dead-lettered, the same event id is not handled or dead-lettered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from fedbus.bus.codec import Event
from fedbus.bus.idempotency import IdempotencyStore
from fedbus.bus.producer import Publisher
from fedbus.errors import NonRetryableError, RetryableError

__all__ = ["DeliveryRules", "Failure", "Handler", "Outcome", "RetryPolicy"]

log = logging.getLogger(__name__)

Handler = Callable[[Event], Awaitable[Sequence[Event] | None]]
"""A bound handler, as :meth:`fedbus.bus.Routes.bind` makes it: one event in, events out."""

Outcome = Literal["handled", "duplicate", "dead_lettered", "ignored"]
"""What became of one record (also the label of the consumed-events counter)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff for :class:`~fedbus.errors.RetryableError`."""

    attempts: int = 5
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"a retry policy needs at least 1 attempt, got {self.attempts}")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.max_backoff_s, self.initial_backoff_s * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class Failure:
    """Why a record goes to the dead-letter topic, and after how many handler attempts."""

    error: BaseException
    attempts: int


DeadLetterSink = Callable[[Failure], Awaitable[None]]
"""Puts the record being delivered on its dead-letter topic with the failure's reason."""


class DeliveryRules:
    """Idempotent skip, bounded retries, dead letters, publish-then-remember.

    Parameters
    ----------
    group
        The consumer group: the namespace of the remembered event ids.
    publisher
        Publishes what handlers return.
    idempotency
        Remembers handled and dead-lettered event ids.
    retry
        Backoff for :class:`~fedbus.errors.RetryableError`.
    timed
        Called with the topic and the seconds each handling took (retries included).
    """

    def __init__(
        self,
        *,
        group: str,
        publisher: Publisher,
        idempotency: IdempotencyStore,
        retry: RetryPolicy,
        timed: Callable[[str, float], None] | None = None,
    ) -> None:
        self.group = group
        self.retry = retry
        self._publisher = publisher
        self._idempotency = idempotency
        self._timed = timed

    async def deliver(
        self,
        event: Event,
        handler: Handler,
        *,
        dead_letter: DeadLetterSink,
        topic: str,
        span: contextlib.AbstractContextManager[object] | None = None,
    ) -> Outcome:
        """Apply the rules to ``event`` from ``topic``; ``span`` wraps the handling."""
        if await self._idempotency.seen(self.group, event.event_id):
            log.info("skipping redelivered event %s on %s", event.event_id, topic)
            return "duplicate"
        started = time.perf_counter()
        if span is None:
            failure = await self._handle_with_retries(handler, event)
        else:
            with span:
                failure = await self._handle_with_retries(handler, event)
        if self._timed is not None:
            self._timed(topic, time.perf_counter() - started)
        if failure is not None:
            await dead_letter(failure)
        # A dead-lettered event is remembered too: the same bad event sent again (a producer
        # retry, a redelivery after a crash) would only be dead-lettered a second time.
        await self._idempotency.remember(self.group, event.event_id)
        return "handled" if failure is None else "dead_lettered"

    async def _handle_with_retries(self, handler: Handler, event: Event) -> Failure | None:
        for attempt in range(1, self.retry.attempts + 1):
            try:
                outputs = await handler(event)
                if outputs:
                    await self._publisher.publish_many(outputs)
                return None
            except NonRetryableError as exc:
                log.warning("event %s rejected: %s", event.event_id, exc)
                return Failure(exc, attempt)
            except RetryableError as exc:
                if attempt == self.retry.attempts:
                    return Failure(exc, attempt)
                delay = self.retry.backoff(attempt)
                log.warning(
                    "event %s attempt %d failed (%s); retry in %.2fs",
                    event.event_id,
                    attempt,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
        return None
