"""Kafka delivery for fedbus events: producer, consumer runner, topic catalog, in-memory bus.

>>> from fedbus.bus import ConsumerRunner, EventProducer, InMemoryBus, ensure_topics
"""

from fedbus.bus.consumer import ConsumerRunner, Handler, RetryPolicy, consumer_options
from fedbus.bus.idempotency import (
    IdempotencyStore,
    InMemoryIdempotencyStore,
    PostgresIdempotencyStore,
)
from fedbus.bus.memory import InMemoryBus
from fedbus.bus.producer import EventProducer, Publisher, producer_options
from fedbus.bus.routing import EventHandler, Route, Routes, route
from fedbus.bus.topics import AddressedTopics, dlq_topic, ensure_topics, reset_group_to_end

__all__ = [
    "AddressedTopics",
    "ConsumerRunner",
    "EventHandler",
    "EventProducer",
    "Handler",
    "IdempotencyStore",
    "InMemoryBus",
    "InMemoryIdempotencyStore",
    "PostgresIdempotencyStore",
    "Publisher",
    "RetryPolicy",
    "Route",
    "Routes",
    "consumer_options",
    "dlq_topic",
    "ensure_topics",
    "producer_options",
    "reset_group_to_end",
    "route",
]
