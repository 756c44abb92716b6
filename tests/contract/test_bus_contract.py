"""One bus contract, two buses: the in-memory bus and the Kafka consumer runner deliver alike.

Each scenario runs against :class:`fedbus.bus.InMemoryBus` (a contract test) and against a
:class:`fedbus.bus.ConsumerRunner` on the real broker of ``make up`` (an integration test), so a
handler test on the in-memory bus shows what the service does on Kafka: one handling per event
id, retries of a :class:`~fedbus.errors.RetryableError`, dead letters with the reason, and the
handler's output published.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from fedbus.bus import (
    ConsumerRunner,
    EventProducer,
    InMemoryBus,
    InMemoryIdempotencyStore,
    RetryPolicy,
    Routes,
    ensure_topics,
    reset_group_to_end,
    route,
)
from fedbus.errors import NonRetryableError, RetryableError
from fedbus.events import DeadLetter, Event, JobFailed, Phase, Progress, decode, load_topics
from fedbus.settings import FedbusSettings, load_settings

ATTEMPTS = 3
RETRY = RetryPolicy(attempts=ATTEMPTS, initial_backoff_s=0.001, max_backoff_s=0.001)
WATCHED = ("progress.dlq", "job.failed")


@dataclass
class Deps:
    """What the scenario handler counts; ``failures`` says how often a step fails first."""

    calls: list[str] = field(default_factory=list)
    failures: dict[int, int] = field(default_factory=dict)


async def on_progress(event: Progress, *, deps: Deps) -> list[Event]:
    """Fail as the step says (2: retryable, 3: for ever, 4: refused), else report a failure."""
    deps.calls.append(event.event_id)
    if event.step == 2 and deps.failures.get(2, 0) > 0:
        deps.failures[2] -= 1
        raise RetryableError("store briefly unreachable")
    if event.step == 3:
        raise RetryableError("store down")
    if event.step == 4:
        raise NonRetryableError("impossible request")
    return [JobFailed.create(source="contract", job_id=event.job_id, code="c", message="m")]


HANDLERS = Routes[Deps](route(Progress, on_progress))


class Bus(Protocol):
    """The scenarios' view of a bus: send, deliver until a condition, read what came out."""

    async def send(self, *events: Event) -> None: ...

    async def deliver_until(self, done: Callable[[], bool], what: str) -> None: ...

    async def read(self, topic: str, job_id: str) -> list[Event]: ...


class MemoryBus:
    """The in-memory bus with an idempotency store, as the runner always has."""

    def __init__(self, deps: Deps) -> None:
        self.bus = InMemoryBus(idempotency=InMemoryIdempotencyStore(), retry=RETRY)
        self.handlers = HANDLERS.bind(deps)

    async def send(self, *events: Event) -> None:
        await self.bus.publish_many(events)

    async def deliver_until(self, done: Callable[[], bool], what: str) -> None:
        await self.bus.drain(self.handlers)
        assert done(), what

    async def read(self, topic: str, job_id: str) -> list[Event]:
        return [e for e in self.bus.events(topic) if e.job_id == job_id]


class KafkaBus:
    """A consumer runner in this process on the real broker, in a group of its own."""

    def __init__(self, settings: FedbusSettings, deps: Deps, producer: EventProducer) -> None:
        self.settings = settings
        self.producer = producer
        self.group = f"contract-{uuid.uuid4().hex[:8]}"
        self.runner = ConsumerRunner(
            settings,
            group_id=self.group,
            handlers=HANDLERS.bind(deps),
            producer=producer,
            idempotency=InMemoryIdempotencyStore(),
            retry=RETRY,
        )
        self.start_offsets: dict[TopicPartition, int] = {}

    async def send(self, *events: Event) -> None:
        await self.producer.publish_many(events)

    async def deliver_until(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 60
        while not done():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after 60 s waiting for {what}")
            await asyncio.sleep(0.05)

    async def read(self, topic: str, job_id: str) -> list[Event]:
        """The records keyed ``job_id`` written to ``topic`` since the test began."""
        consumer = AIOKafkaConsumer(
            **self.settings.kafka_client_options(), group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tps = [tp for tp in self.start_offsets if tp.topic == topic]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, self.start_offsets[tp])
            ends = await consumer.end_offsets(tps)
            found: list[Event] = []
            behind = [tp for tp in tps if self.start_offsets[tp] < ends[tp]]
            while behind:
                for records in (await consumer.getmany(*behind, timeout_ms=1000)).values():
                    found += [decode(r.value) for r in records if r.key == job_id.encode()]
                behind = [tp for tp in behind if await consumer.position(tp) < ends[tp]]
            return found
        finally:
            await consumer.stop()


async def _end_offsets(
    settings: FedbusSettings, topics: tuple[str, ...]
) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), group_id=None)
    await consumer.start()
    try:
        tps = [
            TopicPartition(spec.name, p)
            for spec in load_topics().topics
            if spec.name in topics
            for p in range(spec.partitions)
        ]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


@pytest.fixture
def deps() -> Deps:
    return Deps()


@pytest.fixture(
    params=[
        pytest.param("memory", marks=pytest.mark.contract),
        pytest.param("kafka", marks=pytest.mark.integration),
    ]
)
async def bus(request: pytest.FixtureRequest, deps: Deps) -> AsyncIterator[Bus]:
    if request.param == "memory":
        yield MemoryBus(deps)
        return
    settings: FedbusSettings = load_settings()
    await ensure_topics(settings)
    async with EventProducer(settings, client_id="contract") as producer:
        kafka = KafkaBus(settings, deps, producer)
        await reset_group_to_end(settings, "progress", kafka.group)
        kafka.start_offsets = await _end_offsets(settings, WATCHED)
        await kafka.runner.start()
        running = asyncio.create_task(kafka.runner.run())
        try:
            yield kafka
        finally:
            kafka.runner.request_stop()
            await running
            await kafka.runner.stop()


def _progress(job_id: str, step: int) -> Progress:
    return Progress.create(
        source="contract", job_id=job_id, phase=Phase.TRAINING, message="m", step=step
    )


def _job() -> str:
    return f"contract-{uuid.uuid4().hex[:12]}"


async def _then_sentinel(bus: Bus, deps: Deps, job: str, *events: Event) -> None:
    """Send ``events`` and a last ordinary event of the same job; wait until that one is handled.

    The same job id is the same partition, so everything sent before it was dealt with.
    """
    sentinel = _progress(job, 1)
    await bus.send(*events, sentinel)
    await bus.deliver_until(lambda: sentinel.event_id in deps.calls, "the last event handled")


async def test_an_event_is_handled_once_and_its_output_published(bus: Bus, deps: Deps) -> None:
    job = _job()
    event = _progress(job, 1)

    await bus.send(event)
    await bus.deliver_until(lambda: event.event_id in deps.calls, "the event handled")

    assert deps.calls == [event.event_id]
    [out] = await bus.read("job.failed", job)
    assert isinstance(out, JobFailed)
    assert out.job_id == job


async def test_a_redelivered_event_is_skipped(bus: Bus, deps: Deps) -> None:
    job = _job()
    event = _progress(job, 1)

    await _then_sentinel(bus, deps, job, event, event)

    assert deps.calls.count(event.event_id) == 1
    assert len(await bus.read("job.failed", job)) == 2  # the event's and the sentinel's


async def test_a_retryable_error_is_retried_until_the_handler_succeeds(
    bus: Bus, deps: Deps
) -> None:
    job = _job()
    deps.failures[2] = ATTEMPTS - 1
    flaky = _progress(job, 2)

    await _then_sentinel(bus, deps, job, flaky)

    assert deps.calls.count(flaky.event_id) == ATTEMPTS
    assert await bus.read("progress.dlq", job) == []
    assert len(await bus.read("job.failed", job)) == 2


async def test_retries_spent_dead_letter_the_event_with_the_reason(bus: Bus, deps: Deps) -> None:
    job = _job()
    down = _progress(job, 3)

    await _then_sentinel(bus, deps, job, down)

    [letter] = await bus.read("progress.dlq", job)
    assert isinstance(letter, DeadLetter)
    assert deps.calls.count(down.event_id) == ATTEMPTS
    assert (letter.error_type, letter.attempts) == ("RetryableError", ATTEMPTS)
    assert letter.error_message == "store down"
    assert decode(letter.original_value()).event_id == down.event_id


async def test_a_non_retryable_error_dead_letters_the_event_at_once(bus: Bus, deps: Deps) -> None:
    job = _job()
    refused = _progress(job, 4)

    await _then_sentinel(bus, deps, job, refused)

    [letter] = await bus.read("progress.dlq", job)
    assert isinstance(letter, DeadLetter)
    assert deps.calls.count(refused.event_id) == 1
    assert (letter.error_type, letter.error_message) == ("NonRetryableError", "impossible request")
    assert letter.original_topic == "progress"


async def test_the_same_bad_event_sent_twice_is_dead_lettered_once(bus: Bus, deps: Deps) -> None:
    job = _job()
    refused = _progress(job, 4)

    await _then_sentinel(bus, deps, job, refused, refused)

    letters = await bus.read("progress.dlq", job)
    assert deps.calls.count(refused.event_id) == 1
    assert [decode(d.original_value()).event_id for d in letters if isinstance(d, DeadLetter)] == [
        refused.event_id
    ]
