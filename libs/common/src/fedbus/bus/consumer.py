"""The consumer runner: decode, deduplicate, handle with retries, publish, then commit.

Delivery rules, in the order the runner applies them to each record:

1. A record larger than ``max_event_bytes``, one that cannot be decoded or validated, or one
   whose event ``type`` does not belong on its topic goes to ``<topic>.dlq`` with the reason.
   So does one whose signature does not verify, or whose signer may not say it
   (:mod:`fedbus.bus.signing`), and, when signatures are required, an unsigned one.
2. An event id the consumer group already handled or dead-lettered is skipped (redelivery
   after a crash).
3. The handler runs; :class:`~fedbus.errors.RetryableError` is retried with bounded
   exponential backoff, :class:`~fedbus.errors.NonRetryableError` (or retries spent) sends the
   record to the dead-letter topic; any other exception crashes the process, uncommitted.
4. The events the handler returned are published and acknowledged, the event id is recorded,
   and only then is the offset committed.

Rules 2 to 4 are :class:`~fedbus.bus.delivery.DeliveryRules`, which the in-memory bus
applies too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError
from prometheus_client import Counter, Histogram

from fedbus.bus.codec import Event, EventDecodeError, dead_letter_for, decode_event
from fedbus.bus.delivery import DeliveryRules, Failure, Handler, Outcome, RetryPolicy
from fedbus.bus.idempotency import IdempotencyStore
from fedbus.bus.producer import Publisher
from fedbus.bus.signing import EventSignatureError, KeyDirectory, SignedBy, is_signed
from fedbus.bus.topics import catalog, dlq_topic
from fedbus.bus.tracing import consume_span, tracing_enabled
from fedbus.events import MAX_EVENT_BYTES, DecodeFailure
from fedbus.events.topics import DEAD_LETTER_SUFFIX
from fedbus.settings import FedbusSettings
from fedbus.telemetry import log_context, trace_id_of

__all__ = [
    "ConsumerRunner",
    "Handler",
    "RawPublisher",
    "RetryPolicy",
    "consumer_options",
    "subscription_pattern",
]

log = logging.getLogger(__name__)

HANDLED = Counter(
    "fedbus_events_consumed_total", "Events consumed, by outcome", ["topic", "outcome"]
)
HANDLE_SECONDS = Histogram("fedbus_event_handle_seconds", "Handler duration", ["topic"])


class RawPublisher(Publisher, Protocol):
    """A publisher that can also put raw bytes on a topic (dead letters)."""

    async def publish_raw(
        self, topic: str, value: bytes, *, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        """Publish ``value`` as it is."""


FAMILY_REFRESH_MS = 10_000
"""How often a runner that reads topic families looks for new members (metadata refresh)."""


def subscription_pattern(topics: Sequence[str], families: Sequence[str]) -> str:
    """A regular expression matching ``topics`` exactly and every member of ``families``.

    A member is ``<family>.<value>``; the family's own dead-letter topic
    (``<family>.dlq``) is no member and is not matched.
    """
    exact = "|".join(re.escape(t) for t in topics)
    members = "|".join(re.escape(f) for f in families)
    dlq = re.escape(DEAD_LETTER_SUFFIX[1:])
    return rf"^(?:{exact})$|^(?:{members})\.(?!{dlq}$)[A-Za-z0-9._-]+$"


def consumer_options(settings: FedbusSettings, *, group_id: str) -> dict[str, Any]:
    """Every aiokafka consumer option that matters, set explicitly.

    aiokafka defaults to auto-commit, ``latest`` and ``read_uncommitted``; fedbus commits
    only after handling, starts new groups at the beginning, and never reads aborted data.
    """
    return {
        **settings.kafka_client_options(),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_poll_records": 500,
        "max_poll_interval_ms": 30 * 60_000,
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 3_000,
        # A long poll: the broker answers as soon as a record arrives, so this bounds how
        # often an idle consumer asks (50 idle trainers at 100 ms kept a core busy) and how
        # long a partition waits behind a fetch in flight that left it out (see the setting).
        "fetch_max_wait_ms": settings.kafka_fetch_max_wait_ms,
    }


class ConsumerRunner:
    """Runs handlers over Kafka topics with at-least-once delivery and idempotent handling.

    Parameters
    ----------
    settings
        Connection settings.
    group_id
        The consumer group; also the namespace of the idempotency records.
    handlers
        The routing table: event class -> ``async def handler(event) -> list[Event] | None``.
    topics
        Topics to subscribe to; by default the ``type`` of every handled event.
    producer
        Publishes handler output and dead letters.
    idempotency
        Remembers handled event ids.
    keys
        The published signing keys; a signed record is checked against them.
    require_signatures
        Dead-letter unsigned records (and, without ``keys``, every record).
    """

    def __init__(
        self,
        settings: FedbusSettings,
        *,
        group_id: str,
        handlers: Mapping[type[Event], Handler],
        producer: RawPublisher,
        idempotency: IdempotencyStore,
        topics: Sequence[str] | None = None,
        families: Sequence[str] = (),
        retry: RetryPolicy | None = None,
        max_event_bytes: int = MAX_EVENT_BYTES,
        commit_interval_s: float = 0.0,
        keys: KeyDirectory | None = None,
        require_signatures: bool = False,
    ) -> None:
        self._keys = keys
        self._require_signatures = require_signatures
        self._handlers = dict(handlers)
        self._topics = list(topics or sorted({_event_type(cls) for cls in handlers}))
        self._families = list(families)
        self._group = group_id
        self._producer = producer
        self._rules = DeliveryRules(
            group=group_id,
            publisher=producer,
            idempotency=idempotency,
            retry=retry or RetryPolicy(),
            timed=self._observe_seconds,
        )
        self._max_bytes = max_event_bytes
        self._commit_interval_s = commit_interval_s
        options = consumer_options(settings, group_id=group_id)
        if self._families:
            # A new member (a tenant's intake topic made today) is found at the next
            # metadata refresh: every FAMILY_REFRESH_MS, not aiokafka's five minutes.
            options["metadata_max_age_ms"] = FAMILY_REFRESH_MS
        self._consumer = AIOKafkaConsumer(**options)
        self._pending: dict[TopicPartition, int] = {}
        self._last_commit = time.monotonic()
        self._committing: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        # Held while a record is handled, so a rebalance waits for it before committing.
        self._handling = asyncio.Lock()
        self._counters: dict[tuple[str, str], Any] = {}
        self._tally: dict[tuple[str, str], int] = {}
        self._timers: dict[str, Any] = {}
        # Bumped when partitions are revoked: until then no record needs an assignment check.
        self._generation = 0
        self._tracing = tracing_enabled()

    @property
    def topics(self) -> list[str]:
        """The topics this runner subscribes to (a family as ``<name>.*``)."""
        return [*self._topics, *(f"{family}.*" for family in self._families)]

    async def start(self) -> None:
        """Join the consumer group."""
        self._tracing = tracing_enabled()  # a service installs its tracer provider first
        await self._consumer.start()
        listener = _CommitOnRevoke(self)
        if self._families:
            pattern = subscription_pattern(self._topics, self._families)
            self._consumer.subscribe(pattern=pattern, listener=listener)
        else:
            self._consumer.subscribe(self._topics, listener=listener)

    async def commit_revoked(self, revoked: set[TopicPartition]) -> None:
        """Commit what was handled on partitions this member is about to lose.

        Waits for the record being handled, so no record is in flight on two members.
        """
        async with self._handling:
            self._generation += 1
            await self._settle_commit()
            done = {tp: offset for tp, offset in self._pending.items() if tp in revoked}
            for tp in done:
                del self._pending[tp]
            if done:
                await self._safe_commit(done)

    async def stop(self) -> None:
        """Commit what was handled and leave the group."""
        self._stopping.set()
        self._flush_counts()
        try:
            await self._settle_commit()
            await self._commit(force=True)
        finally:
            await self._consumer.stop()  # leave the group even when the last commit failed

    def request_stop(self) -> None:
        """Ask :meth:`run` to return after the batch in hand."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until :meth:`request_stop`; handles each partition's records in order."""
        while not self._stopping.is_set():
            batches = await self._consumer.getmany(timeout_ms=200)
            generation = self._generation
            for tp, records in batches.items():
                for record in records:
                    async with self._handling:
                        moved = self._generation != generation
                        if moved and tp not in self._consumer.assignment():
                            break  # revoked by a rebalance: its new owner handles the rest
                        await self.handle_record(record)
                        self._pending[tp] = record.offset + 1
            self._flush_counts()
            await self._commit()

    async def _commit(self, *, force: bool = False) -> None:
        """Commit handled offsets; the commit overlaps the handling of the next batch.

        One commit is in flight at a time; offsets handled meanwhile wait for the next one.
        ``force`` (stop, after :meth:`_settle_commit`) commits what is left and waits.
        """
        if self._committing is not None and self._committing.done():
            committing, self._committing = self._committing, None
            await committing  # a failure surfaces here, in run(): the runner stops, uncommitted
        due = time.monotonic() - self._last_commit >= self._commit_interval_s
        if not self._pending or not (force or due) or self._committing is not None:
            return
        pending, self._pending = dict(self._pending), {}
        self._last_commit = time.monotonic()
        if force:
            await self._safe_commit(pending)
        else:
            self._committing = asyncio.create_task(self._safe_commit(pending))

    async def _settle_commit(self) -> None:
        """Wait for the commit in flight; a failure is logged (its offsets come again later)."""
        committing, self._committing = self._committing, None
        if committing is None:
            return
        try:
            await committing
        except Exception as exc:  # a rebalance or stop must go on; redelivery is harmless
            log.warning("background offset commit failed: %s", exc)

    async def _safe_commit(self, offsets: dict[TopicPartition, int]) -> None:
        assigned = self._consumer.assignment()
        offsets = {tp: o for tp, o in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on (rebalance): the new owner gets these records again and the
            # idempotency store makes the redelivery harmless.
            log.warning("offsets not committed after a rebalance: %s", exc)

    async def handle_record(self, record: ConsumerRecord[bytes, bytes]) -> Outcome:
        """Apply the delivery rules to one record; returns the outcome label."""
        event_or_error = await self._admit(record)
        if isinstance(event_or_error, Failure):
            # No event id to remember: an undecodable record has none we could trust, so the
            # same bad bytes sent again are dead-lettered again.
            await self._dead_letter(record, event_or_error)
            return self._count(record.topic, "dead_lettered")
        event = event_or_error
        handler = self._handlers.get(type(event))
        if handler is None:
            return self._count(record.topic, "ignored")

        # Without a tracer provider the span is a no-op: skip its set-up per event.
        span = consume_span(record.topic, record.headers) if self._tracing else None
        # Every log line written while the event is handled names its trace and event.
        with log_context(trace_id=trace_id_of(event.traceparent), event_id=event.event_id):
            outcome = await self._rules.deliver(
                event,
                handler,
                dead_letter=functools.partial(self._dead_letter, record),
                topic=record.topic,
                span=span,
            )
        return self._count(record.topic, outcome)

    async def _admit(self, record: ConsumerRecord[bytes, bytes]) -> Event | Failure:
        """The record's event, when its size, signature, bytes and signer all pass."""
        raw = record.value or b""
        if len(raw) > self._max_bytes:
            problem = f"{len(raw)} bytes exceed the limit of {self._max_bytes}"
            return Failure(EventDecodeError(DecodeFailure.OVERSIZED, [problem]), 0)
        headers = list(record.headers or ())
        signer: SignedBy | None = None
        if is_signed(headers) and self._keys is not None:
            try:  # before a byte is parsed: only what a known key said is decoded
                signer = await self._keys.verify(record.topic, record.key, raw, headers)
            except EventSignatureError as exc:
                return Failure(exc, 0)
        elif self._require_signatures:
            why = "unsigned" if not is_signed(headers) else "no FEDBUS_ROOT_PUBLIC_KEYS to check it"
            return Failure(EventSignatureError("unsigned", f"signatures are required: {why}"), 0)
        decoded = self._decode(record, raw)
        if isinstance(decoded, Failure) or signer is None or self._keys is None:
            return decoded
        try:
            self._keys.check_authority(signer, record.topic, decoded)
            if record.key != decoded.kafka_key():  # a signed heartbeat under another's key
                raise EventSignatureError(
                    "wrong_key",
                    f"the record's Kafka key {record.key!r} is not its event's "
                    f"({decoded.kafka_key()!r}): on a compacted topic it would replace "
                    "another party's latest record",
                )
        except EventSignatureError as exc:
            return Failure(exc, 0)
        return decoded

    def _decode(self, record: ConsumerRecord[bytes, bytes], raw: bytes) -> Event | Failure:
        try:
            event = decode_event(raw)
        except EventDecodeError as exc:
            return Failure(exc, 0)
        try:
            # The type must be the topic's; on a family's member the addressed field must name
            # it (another trainer's assignment, another tenant's request are refused), and the
            # source becomes the member's one writer.
            return catalog().admit(event, record.topic)
        except ValueError as exc:
            err = EventDecodeError(
                DecodeFailure.SCHEMA_VIOLATION, [str(exc)], event_type=event.type
            )
            return Failure(err, 0)

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], failure: Failure) -> None:
        letter = dead_letter_for(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value or b"",
            headers=list(record.headers or ()),
            error=failure.error,
            attempts=failure.attempts,
            source=self._group,
        )
        log.warning(
            "dead-lettering %s[%d]@%d: %s",
            record.topic,
            record.partition,
            record.offset,
            failure.error,
        )
        await self._producer.publish_raw(
            dlq_topic(record.topic), letter, key=record.key, headers=list(record.headers or ())
        )

    def _count(self, topic: str, outcome: Outcome) -> Outcome:
        key = (topic, outcome)
        self._tally[key] = self._tally.get(key, 0) + 1
        return outcome

    def _flush_counts(self) -> None:
        """Add the outcomes tallied since the last flush to the Prometheus counters.

        Once per fetched batch rather than per event: a labelled counter's ``inc`` takes a
        lock and costs about as much as deduplicating the event.
        """
        for key, count in self._tally.items():
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = HANDLED.labels(*key)
            counter.inc(count)
        self._tally.clear()

    def _observe_seconds(self, topic: str, seconds: float) -> None:
        timer = self._timers.get(topic)
        if timer is None:
            timer = self._timers[topic] = HANDLE_SECONDS.labels(topic)
        timer.observe(seconds)


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits handled offsets before partitions move to another member."""

    def __init__(self, runner: ConsumerRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner.commit_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return None


def _event_type(cls: type[Event]) -> str:
    return str(cls.model_fields["type"].default)
