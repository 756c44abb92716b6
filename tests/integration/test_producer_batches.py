"""``EventProducer.publish_many`` packs record batches itself: on the real broker the records
are those ``publish`` writes (partition, order, headers, bytes), nothing is lost across full
batches, and what was packed before a failing event still goes out."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from fedbus.bus import EventProducer, ensure_topics
from fedbus.bus.producer import KeyHashCache
from fedbus.events import Phase, Progress, decode
from fedbus.settings import FedbusSettings

PAD = "p" * 900  # about 1 KB per event: 700 of them fill several 256 KB batches


def _progress(job_id: str, step: int) -> Progress:
    return Progress.create(
        source="test", job_id=job_id, phase=Phase.TRAINING, message=PAD, step=step, total=700
    )


class Log:
    """The ``progress`` topic read from the end it had when this was started."""

    def __init__(self, settings: FedbusSettings) -> None:
        self._options = settings.kafka_client_options()
        self._consumer = AIOKafkaConsumer(**self._options, group_id=None, enable_auto_commit=False)
        self.partitions: list[int] = []

    async def start(self) -> None:
        metadata = AIOKafkaProducer(**self._options)  # its partitions_for() waits for them
        await metadata.start()
        try:
            self.partitions = sorted(await metadata.partitions_for("progress"))
        finally:
            await metadata.stop()
        await self._consumer.start()
        tps = [TopicPartition("progress", p) for p in self.partitions]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now, before anything is published
            await self._consumer.position(tp)

    async def records(
        self, keys: set[bytes], n: int, limit_s: float = 30
    ) -> list[ConsumerRecord[bytes, bytes]]:
        found: list[ConsumerRecord[bytes, bytes]] = []
        deadline = time.monotonic() + limit_s
        while len(found) < n and time.monotonic() < deadline:
            for batch in (await self._consumer.getmany(timeout_ms=500)).values():
                found += [r for r in batch if r.key in keys]
        return found

    async def stop(self) -> None:
        await self._consumer.stop()


@pytest.fixture
async def log(settings: FedbusSettings) -> AsyncIterator[Log]:
    await ensure_topics(settings)
    reader = Log(settings)
    await reader.start()
    yield reader
    await reader.stop()


def _two_jobs_on_two_partitions(partitions: list[int]) -> tuple[str, str]:
    pick = KeyHashCache()
    first = f"batch-{uuid.uuid4().hex[:8]}"
    for _ in range(1000):
        other = f"batch-{uuid.uuid4().hex[:8]}"
        if pick(other.encode(), partitions, partitions) != pick(
            first.encode(), partitions, partitions
        ):
            return first, other
    raise AssertionError("no two keys on different partitions")


async def test_publish_many_writes_what_publish_writes_in_order_across_full_batches(
    settings: FedbusSettings, log: Log
) -> None:
    async with EventProducer(settings, client_id="test-batches") as producer:
        a, b = _two_jobs_on_two_partitions(log.partitions)
        single = _progress(a, -1)
        await producer.publish(single)  # aiokafka's own send(): the reference
        events = [_progress(job, step) for step in range(350) for job in (a, b)]
        await producer.publish_many(events)

    records = await log.records({a.encode(), b.encode()}, 1 + len(events))

    assert len(records) == 1 + len(events)
    by_job: dict[bytes, list[ConsumerRecord[bytes, bytes]]] = {}
    for record in records:
        by_job.setdefault(record.key or b"", []).append(record)
    reference = by_job[a.encode()][0]
    assert decode(reference.value or b"").event_id == single.event_id
    assert {r.partition for r in by_job[a.encode()]} == {reference.partition}
    assert {r.partition for r in by_job[b.encode()]} != {reference.partition}
    for job in (a, b):
        mine = sorted(by_job[job.encode()], key=lambda r: r.offset)
        steps = [e.step for e in (decode(r.value or b"") for r in mine) if isinstance(e, Progress)]
        assert steps == ([-1] if job == a else []) + list(range(350))  # every one, in order
    sent = {e.event_id: e for e in [single, *events]}
    for record in records:  # no tracer provider here: the events' own trace context travels
        event = decode(record.value or b"")
        headers = dict(record.headers)
        assert headers["content-type"] == b"application/json"
        assert headers["traceparent"] == sent[event.event_id].traceparent.encode()


async def test_events_packed_before_a_failing_one_are_still_published(
    settings: FedbusSettings, log: Log
) -> None:
    job = f"batch-fail-{uuid.uuid4().hex[:8]}"

    def events() -> Iterator[Progress]:
        for step in range(5):
            yield _progress(job, step)
        raise ValueError("the sixth event could not be made")

    async with EventProducer(settings, client_id="test-batches") as producer:
        with pytest.raises(ValueError, match="sixth event"):
            await producer.publish_many(events())

    records = await log.records({job.encode()}, 5)
    steps = [e.step for e in (decode(r.value or b"") for r in records) if isinstance(e, Progress)]
    assert steps == list(range(5))
