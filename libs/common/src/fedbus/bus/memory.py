"""An in-memory bus with the producer's interface, for unit tests of handlers."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

from fedbus.bus.codec import Event, decode_event, encode_event
from fedbus.bus.consumer import Handler

__all__ = ["InMemoryBus"]


class InMemoryBus:
    """Keeps published events per topic and can route them to handlers.

    Every event is encoded and decoded on publish, so a handler test also proves the event
    survives the wire format.
    """

    def __init__(self) -> None:
        self.topics: dict[str, list[Event]] = {}
        self._queue: deque[Event] = deque()

    async def publish(self, event: Event) -> None:
        """Record ``event`` on the topic named by its type."""
        copy = decode_event(encode_event(event))
        self.topics.setdefault(copy.type, []).append(copy)
        self._queue.append(copy)

    async def publish_many(self, events: Iterable[Event]) -> None:
        """Record events in order."""
        for event in events:
            await self.publish(event)

    def events(self, event_type: str) -> list[Event]:
        """Events published on one topic, in order."""
        return list(self.topics.get(event_type, []))

    async def drain(self, handlers: Mapping[type[Event], Handler], *, limit: int = 10_000) -> int:
        """Deliver queued events to their handlers (and what those publish) until quiet.

        Returns the number of events delivered to a handler.
        """
        delivered = 0
        while self._queue and delivered < limit:
            event = self._queue.popleft()
            handler = handlers.get(type(event))
            if handler is None:
                continue
            delivered += 1
            await self.publish_many(await handler(event) or [])
        return delivered
