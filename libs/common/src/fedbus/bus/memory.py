"""An in-memory bus with the producer's interface, for unit tests of handlers."""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

from fedbus.bus.codec import Event, dead_letter_for, decode_event, encode_event
from fedbus.bus.delivery import DeliveryRules, Failure, Handler, RetryPolicy
from fedbus.bus.idempotency import IdempotencyStore
from fedbus.bus.topics import dlq_topic
from fedbus.events import DeadLetter

__all__ = ["InMemoryBus"]


class InMemoryBus:
    """Keeps published events per topic and routes them to handlers as the consumer runner does.

    Every event is encoded and decoded on publish, so a handler test also proves the event
    survives the wire format. :meth:`drain` applies the runner's delivery rules
    (:class:`~fedbus.bus.delivery.DeliveryRules`): :class:`~fedbus.errors.RetryableError`
    is retried, :class:`~fedbus.errors.NonRetryableError` (or retries spent) puts a
    :class:`~fedbus.events.DeadLetter` with the reason on ``<topic>.dlq``, and, given an
    idempotency store as the runner always is, an event id already handled or dead-lettered
    is skipped.

    Parameters
    ----------
    group
        The consumer group the remembered event ids belong to.
    idempotency
        Remembers handled and dead-lettered event ids, like the runner's. Without one every
        delivery reaches the handler, as a redelivery does when the runner crashed between
        publishing a handler's output and recording the event id: what a test of a
        handler's own idempotency (the same event published twice) needs.
    retry
        The retry policy; by default the runner's attempts without the backoff waits.
    """

    def __init__(
        self,
        *,
        group: str = "in-memory",
        idempotency: IdempotencyStore | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.topics: dict[str, list[Event]] = {}
        self._queue: deque[tuple[Event, int]] = deque()
        self._rules = DeliveryRules(
            group=group,
            publisher=self,
            idempotency=idempotency or _Forgetful(),
            retry=retry or RetryPolicy(initial_backoff_s=0.0, max_backoff_s=0.0),
        )

    async def publish(self, event: Event) -> None:
        """Record ``event`` on its topic (its type, or an addressed event's own topic)."""
        copy = decode_event(encode_event(event))
        log = self.topics.setdefault(copy.topic(), [])
        log.append(copy)
        self._queue.append((copy, len(log) - 1))

    async def publish_many(self, events: Iterable[Event]) -> None:
        """Record events in order."""
        for event in events:
            await self.publish(event)

    async def publish_raw(
        self, topic: str, value: bytes, *, key: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        """Record an encoded event (a dead letter) on ``topic``; not routed to handlers."""
        self.topics.setdefault(topic, []).append(decode_event(value))

    def events(self, event_type: str) -> list[Event]:
        """Events published on one topic, in order."""
        return list(self.topics.get(event_type, []))

    def dead_letters(self, topic: str) -> list[DeadLetter]:
        """The dead letters of ``topic`` (those on ``<topic>.dlq``), in order."""
        return [e for e in self.topics.get(dlq_topic(topic), []) if isinstance(e, DeadLetter)]

    async def drain(self, handlers: Mapping[type[Event], Handler], *, limit: int = 10_000) -> int:
        """Deliver queued events to their handlers (and what those publish) until quiet.

        Parameters
        ----------
        handlers
            The routing table with its dependencies bound (``Routes.bind(deps)``).
        limit
            Most events to hand to handlers in one call.

        Returns
        -------
        int
            The number of events handed to a handler (skipped duplicates not counted).
        """
        delivered = 0
        while self._queue and delivered < limit:
            event, offset = self._queue.popleft()
            handler = handlers.get(type(event))
            if handler is None:
                continue
            dead_letter = functools.partial(self._dead_letter, event, offset)
            outcome = await self._rules.deliver(
                event, handler, dead_letter=dead_letter, topic=event.topic()
            )
            delivered += outcome != "duplicate"
        return delivered

    async def _dead_letter(self, event: Event, offset: int, failure: Failure) -> None:
        key = event.kafka_key()
        letter = dead_letter_for(
            topic=event.topic(),
            partition=0,
            offset=offset,
            key=key,
            value=encode_event(event),
            headers=[],
            error=failure.error,
            attempts=failure.attempts,
            source=self._rules.group,
        )
        await self.publish_raw(dlq_topic(event.topic()), letter, key=key, headers=[])


class _Forgetful:
    """An idempotency store that remembers nothing: every delivery is a first delivery."""

    async def seen(self, group: str, event_id: str) -> bool:
        return False

    async def remember(self, group: str, event_id: str) -> None:
        return None
