"""The event producer: idempotent, ``acks=all``, keyed by job id, trace context in headers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

from fedbus.bus.codec import Event, WireFormat, encode_event, event_key
from fedbus.bus.signing import Signer
from fedbus.bus.tracing import (
    Headers,
    event_trace_headers,
    inject_headers,
    produce_span,
    tracing_enabled,
)
from fedbus.settings import FedbusSettings

__all__ = ["EventProducer", "Publisher", "producer_options"]

log = logging.getLogger(__name__)

SIGN_BATCH = 64
"""Events of one ``publish_many`` signed together (one signature, a proof each: 6 hashes)."""


class Publisher(Protocol):
    """What a service needs to emit events; Kafka in production, in memory in unit tests."""

    async def publish(self, event: Event) -> None:
        """Publish one event and wait until the broker has it."""

    async def publish_many(self, events: Iterable[Event]) -> None:
        """Publish events in order and wait until the broker has all of them."""


def producer_options(settings: FedbusSettings) -> dict[str, Any]:
    """Every aiokafka producer option that matters, set explicitly.

    aiokafka's defaults are ``acks=1`` and no idempotence: a leader failover can lose or
    duplicate an event. fedbus needs neither.
    """
    return {
        **settings.kafka_client_options(),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "max_batch_size": 256 * 1024,
        "max_request_size": 2 * 1024 * 1024,
        "request_timeout_ms": 30_000,
        "retry_backoff_ms": 200,
        "compression_type": None,
        "partitioner": KeyHashCache(),
    }


class KeyHashCache:
    """aiokafka's default partitioner (murmur2 of the key, as Kafka's Java client) with each
    key's hash remembered: the pure-Python murmur2 costs more than encoding a 1 KB event,
    and a job publishes thousands of events under one key.
    """

    def __init__(self, capacity: int = 65_536) -> None:
        self._capacity = capacity
        self._hashes: dict[bytes, int] = {}
        self._default = DefaultPartitioner()

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return self._default(key, all_partitions, available)  # type: ignore[no-any-return]
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self._capacity:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]


class EventProducer:
    """Publishes fedbus events to their topic (:meth:`~fedbus.events.Event.topic`: the
    ``type``, or an addressed event's own topic such as ``round.assigned.<client_id>``).

    Parameters
    ----------
    settings
        Connection settings.
    client_id
        The Kafka client id, usually the service name.
    wire_format
        ``"json"`` (default) or ``"avro"``.
    signer
        Signs every record (:mod:`fedbus.bus.signing`); by default the key of
        ``FEDBUS_SIGNING_KEY_FILE``, none when it is not set.
    """

    def __init__(
        self,
        settings: FedbusSettings,
        *,
        client_id: str,
        wire_format: WireFormat = "json",
        signer: Signer | None = None,
    ) -> None:
        self._signer = signer if signer is not None else Signer.from_settings(settings)
        options = producer_options(settings)
        self._partitioner: KeyHashCache = options["partitioner"]
        self._producer = AIOKafkaProducer(**options, client_id=client_id)
        self._format: WireFormat = wire_format
        self._tracing = tracing_enabled()

    async def start(self) -> None:
        """Connect to the brokers."""
        self._tracing = tracing_enabled()  # a service installs its tracer provider first
        await self._producer.start()

    async def stop(self) -> None:
        """Flush pending events and disconnect."""
        await self._producer.stop()

    async def __aenter__(self) -> EventProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def publish(self, event: Event) -> None:
        """Publish one event and wait for the broker's acknowledgement."""
        await (await self._send(event))

    async def publish_many(self, events: Iterable[Event]) -> None:
        """Publish in order, pipelined, and wait until every one is acknowledged.

        Events are packed into one record batch per partition (aiokafka's batch API, the
        same records ``send`` would write, in the same order per partition, with the same
        idempotent sequence numbers); a full batch goes out while the next fills. Packing
        skips ``send``'s per-record work (about 15 us of its 20), so a handler's or a
        replay's burst costs little more than encoding it.

        An event that fails to encode raises after the events before it are sent; a
        cancelled call sends nothing more.
        """
        futures: list[asyncio.Future[Any]] = []
        try:
            await self._send_batched(events, futures)
            # in turn rather than gather(): once the first is acknowledged the rest mostly
            # are, and a done future costs nothing to await (gather adds a callback to each)
            for future in futures:
                await future
        except BaseException:
            for future in futures:  # retrieve the other failures: no "never retrieved" noise
                future.add_done_callback(_retrieve)
            raise

    async def _send_batched(
        self, events: Iterable[Event], futures: list[asyncio.Future[Any]]
    ) -> None:
        partitions: dict[str, list[int]] = {}
        batches: dict[tuple[str, int], BatchBuilder] = {}
        try:
            # Up to SIGN_BATCH events are encoded, then signed with one signature (each keeps
            # its own inclusion proof: fedbus.bus.signing), then packed.
            records: list[tuple[str, bytes | None, bytes, Headers]] = []
            try:
                for event in events:
                    topic, key = event.topic(), event_key(event)
                    value = encode_event(event, self._format)  # <= MAX_EVENT_BYTES
                    records.append((topic, key, value, self._trace_headers(event)))
                    if len(records) == SIGN_BATCH:
                        await self._pack(records, partitions, batches, futures)
                        records = []
            except Exception:  # an event that fails to be made or encoded: those before go out
                if records:
                    await self._pack(records, partitions, batches, futures)
                raise
            if records:
                await self._pack(records, partitions, batches, futures)
        except Exception:
            await self._send_all(batches, futures)
            raise
        await self._send_all(batches, futures)

    async def _pack(
        self,
        records: list[tuple[str, bytes | None, bytes, Headers]],
        partitions: dict[str, list[int]],
        batches: dict[tuple[str, int], BatchBuilder],
        futures: list[asyncio.Future[Any]],
    ) -> None:
        signed = self._signer.sign_batch(records) if self._signer is not None else None
        for i, (topic, key, value, headers) in enumerate(records):
            if signed is not None:
                headers = signed[i]
            known = partitions.get(topic)
            if known is None:
                known = partitions[topic] = sorted(await self._producer.partitions_for(topic))
            # by key as send() would; no key: any partition (aiokafka picks at random)
            tp = (topic, self._partitioner(key, known, known))
            batch = batches.get(tp)
            if batch is None:
                batch = batches[tp] = self._producer.create_batch()
            if batch.append(timestamp=None, key=key, value=value, headers=headers) is None:
                futures.append(await self._send_batch(batch, *tp))  # full: send, start anew
                batch = batches[tp] = self._producer.create_batch()
                batch.append(timestamp=None, key=key, value=value, headers=headers)  # empty

    async def _send_all(
        self, batches: dict[tuple[str, int], BatchBuilder], futures: list[asyncio.Future[Any]]
    ) -> None:
        for (topic, partition), batch in batches.items():
            futures.append(await self._send_batch(batch, topic, partition))

    async def _send_batch(
        self, batch: BatchBuilder, topic: str, partition: int
    ) -> asyncio.Future[Any]:
        batch.close()  # complete: the sender takes it at once instead of lingering on it
        return await self._producer.send_batch(  # type: ignore[no-any-return]
            batch, topic, partition=partition
        )

    def _trace_headers(self, event: Event) -> Headers:
        content_type = ("content-type", _content_type(self._format))
        if not self._tracing:
            return [content_type, *event_trace_headers(event.traceparent, event.tracestate)]
        with produce_span(event.type):  # the span's context travels in the headers
            return inject_headers([content_type])

    def _headers(self, event: Event, topic: str, key: bytes | None, value: bytes) -> Headers:
        headers = self._trace_headers(event)
        if self._signer is None:
            return headers
        return self._signer.sign(topic, key, value, headers)

    async def publish_raw(
        self, topic: str, value: bytes, *, key: bytes | None, headers: Headers | None = None
    ) -> None:
        """Publish bytes as they are (dead letters, tests of malformed input), signed by this
        producer's key (any signature in ``headers`` is replaced)."""
        out = list(headers or [])
        if self._signer is not None:
            out = self._signer.sign(topic, key, value, out)
        await self._producer.send_and_wait(topic, value, key=key, headers=out)

    async def _send(self, event: Event) -> asyncio.Future[Any]:
        value = encode_event(event, self._format)
        topic, key = event.topic(), event_key(event)
        headers = self._headers(event, topic, key, value)
        return await self._producer.send(  # type: ignore[no-any-return]
            topic, value, key=key, headers=headers
        )


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _content_type(fmt: WireFormat) -> bytes:
    return b"application/json" if fmt == "json" else b"avro/binary"
