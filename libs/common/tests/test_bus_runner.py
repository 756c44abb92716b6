"""The consumer runner's delivery rules, with fakes instead of Kafka."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterable
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from fedbus.bus import (
    ConsumerRunner,
    InMemoryBus,
    InMemoryIdempotencyStore,
    RetryPolicy,
    Routes,
    route,
)
from fedbus.errors import NonRetryableError, RetryableError
from fedbus.events import DeadLetter, Event, JobFailed, Phase, Progress, decode, encode
from fedbus.settings import FedbusSettings


class FakePublisher:
    """Records what the runner publishes."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.raw: list[tuple[str, bytes, bytes | None]] = []

    async def publish(self, event: Event) -> None:
        self.events.append(event)

    async def publish_many(self, events: Iterable[Event]) -> None:
        self.events.extend(events)

    async def publish_raw(
        self, topic: str, value: bytes, *, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        self.raw.append((topic, value, key))

    def dead_letters(self) -> list[DeadLetter]:
        return [
            d
            for t, v, _ in self.raw
            if t.endswith(".dlq") and isinstance(d := decode(v), DeadLetter)
        ]


def progress(step: int = 1) -> Progress:
    return Progress.create(source="t", job_id="job-1", phase=Phase.TRAINING, message="m", step=step)


def record(value: bytes, topic: str = "progress", offset: int = 7) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"job-1",
        value=value,
        checksum=None,
        serialized_key_size=5,
        serialized_value_size=len(value),
        headers=[],
    )


def runner(handler: Any, publisher: FakePublisher, attempts: int = 3) -> ConsumerRunner:
    settings = FedbusSettings(_env_file=None)  # type: ignore[call-arg]
    return ConsumerRunner(
        settings,
        group_id="g",
        handlers={Progress: handler},
        producer=publisher,
        idempotency=InMemoryIdempotencyStore(),
        retry=RetryPolicy(attempts=attempts, initial_backoff_s=0.001),
    )


async def test_handler_output_is_published_and_a_redelivery_is_skipped() -> None:
    pub, calls = FakePublisher(), []
    out = JobFailed.create(source="t", job_id="job-1", code="c", message="m")

    async def handler(event: Progress) -> list[Event]:
        calls.append(event.event_id)
        return [out]

    r, raw = runner(handler, pub), encode(progress())

    first = await r.handle_record(record(raw))
    again = await r.handle_record(record(raw, offset=8))

    assert (first, again) == ("handled", "duplicate")
    assert len(calls) == 1
    assert [e.event_id for e in pub.events] == [out.event_id]


async def test_retryable_errors_are_retried_then_succeed() -> None:
    pub, attempts = FakePublisher(), []

    async def flaky(event: Progress) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise RetryableError("minio unreachable")

    outcome = await runner(flaky, pub, attempts=3).handle_record(record(encode(progress())))

    assert outcome == "handled"
    assert len(attempts) == 3
    assert pub.raw == []


async def test_retries_spent_dead_letters_with_the_attempt_count() -> None:
    pub = FakePublisher()

    async def down(event: Progress) -> None:
        raise RetryableError("postgres down")

    raw = encode(progress())
    outcome = await runner(down, pub, attempts=2).handle_record(record(raw))

    [letter] = pub.dead_letters()
    assert outcome == "dead_lettered"
    assert (letter.attempts, letter.error_type) == (2, "RetryableError")
    assert letter.original_value() == raw
    assert (letter.original_topic, letter.original_offset) == ("progress", 7)


async def test_non_retryable_errors_dead_letter_at_once() -> None:
    pub, calls = FakePublisher(), []

    async def refuses(event: Progress) -> None:
        calls.append(1)
        raise NonRetryableError("impossible request")

    await runner(refuses, pub).handle_record(record(encode(progress())))

    assert len(calls) == 1
    assert pub.dead_letters()[0].error_message == "impossible request"


async def test_a_dead_lettered_event_sent_again_is_skipped_as_a_duplicate() -> None:
    pub, calls = FakePublisher(), []

    async def refuses(event: Progress) -> None:
        calls.append(1)
        raise NonRetryableError("impossible request")

    r, raw = runner(refuses, pub), encode(progress())

    first = await r.handle_record(record(raw))
    again = await r.handle_record(record(raw, offset=8))

    assert (first, again) == ("dead_lettered", "duplicate")
    assert len(calls) == 1
    assert len(pub.dead_letters()) == 1


async def test_undecodable_bytes_sent_again_are_dead_lettered_again() -> None:
    # Without a decoded event there is no event id to trust, so nothing is remembered.
    pub = FakePublisher()
    r = runner(lambda event: None, pub)

    outcomes = [await r.handle_record(record(b"{nope", offset=o)) for o in (7, 8)]

    assert outcomes == ["dead_lettered", "dead_lettered"]
    assert [d.original_offset for d in pub.dead_letters()] == [7, 8]


async def test_unexpected_errors_crash_without_dead_lettering() -> None:
    pub = FakePublisher()

    async def bug(event: Progress) -> None:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        await runner(bug, pub).handle_record(record(encode(progress())))
    assert pub.raw == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{nope", "bad_json"),
        (encode(JobFailed.create(source="t", job_id="j", code="c", message="m")), "progress"),
        (b"{" + b" " * 2_000_000 + b"}", "exceed"),
    ],
    ids=["bad-json", "wrong-topic", "oversized"],
)
async def test_undecodable_records_are_dead_lettered_with_their_reason(
    value: bytes, reason: str
) -> None:
    pub = FakePublisher()

    async def never(event: Progress) -> None:
        raise AssertionError("must not be called")

    outcome = await runner(never, pub).handle_record(record(value))

    [letter] = pub.dead_letters()
    assert outcome == "dead_lettered"
    assert reason in letter.error_message
    assert value.startswith(base64.b64decode(letter.original_value_b64))


async def test_in_memory_bus_routes_events_through_handlers_until_quiet() -> None:
    bus = InMemoryBus()
    seen: list[int | None] = []

    async def on_progress(event: Progress, *, deps: None) -> list[Event]:
        seen.append(event.step)
        return [progress(event.step + 1)] if event.step is not None and event.step < 3 else []

    await bus.publish(progress(1))
    delivered = await bus.drain(Routes[None](route(Progress, on_progress)).bind(None))

    assert delivered == 3
    assert seen == [1, 2, 3]
    assert [e.step for e in bus.events("progress") if isinstance(e, Progress)] == [1, 2, 3]


def test_a_retry_policy_needs_at_least_one_attempt() -> None:
    with pytest.raises(ValueError, match="at least 1 attempt"):
        RetryPolicy(attempts=0)


class SlowCommitConsumer:
    """A consumer whose commits wait until released; serves given batches, then nothing."""

    def __init__(self, batches: list[list[ConsumerRecord[bytes, bytes]]]) -> None:
        self.tp = TopicPartition("progress", 0)
        self.batches = batches
        self.release = asyncio.Event()
        self.committed: list[int] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.fail: Exception | None = None
        self.stopped = False
        self.commit_started = asyncio.Event()

    def assignment(self) -> set[TopicPartition]:
        return {self.tp}

    async def getmany(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        if self.batches:
            return {self.tp: self.batches.pop(0)}
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.commit_started.set()
        await self.release.wait()
        self.in_flight -= 1
        if self.fail is not None:
            raise self.fail
        self.committed.append(offsets[self.tp])

    async def stop(self) -> None:
        self.stopped = True


async def test_commit_overlaps_the_next_batch_one_at_a_time_and_stop_commits_the_rest() -> None:
    raws = [encode(progress(i)) for i in range(6)]
    batches = [[record(raws[i], offset=i), record(raws[i + 1], offset=i + 1)] for i in (0, 2, 4)]
    fake = SlowCommitConsumer(batches)
    handled: list[int] = []
    all_handled = asyncio.Event()

    async def handler(event: Progress) -> None:
        handled.append(event.step or 0)
        if len(handled) == 6:
            all_handled.set()

    r = runner(handler, FakePublisher())
    r._consumer = fake
    task = asyncio.create_task(r.run())
    async with asyncio.timeout(5):  # the first commit is still waiting: handling goes on
        await all_handled.wait()
    assert fake.committed == []
    assert fake.in_flight == 1
    r.request_stop()
    await task
    fake.release.set()
    await r.stop()
    assert fake.most_in_flight == 1
    assert fake.committed[0] == 2  # the first batch's offsets, committed after its handling
    assert fake.committed[-1] == 6  # stop waits and commits everything handled


async def _handled_with_commit_in_flight(fake: SlowCommitConsumer) -> tuple[ConsumerRunner, Any]:
    seen = asyncio.Event()

    async def handler(event: Progress) -> None:
        seen.set()

    r = runner(handler, FakePublisher())
    r._consumer = fake
    task = asyncio.create_task(r.run())
    async with asyncio.timeout(5):
        await seen.wait()
        await fake.commit_started.wait()
    return r, task


async def test_a_revocation_waits_for_the_commit_in_flight() -> None:
    fake = SlowCommitConsumer([[record(encode(progress(1)), offset=0)]])
    r, task = await _handled_with_commit_in_flight(fake)
    revoke = asyncio.create_task(r.commit_revoked({fake.tp}))
    for _ in range(100):  # let every task run as far as it can while the commit is unanswered
        await asyncio.sleep(0)
    assert r._committing is None  # the revocation took over the commit in flight...
    assert not revoke.done()  # ...and waits for it: the offsets land before the move
    assert (fake.in_flight, fake.committed) == (1, [])
    fake.release.set()
    await revoke
    assert fake.committed == [1]
    r.request_stop()
    await task
    await r.stop()


async def test_a_failed_background_commit_still_lets_the_runner_leave_the_group() -> None:
    fake = SlowCommitConsumer([[record(encode(progress(1)), offset=0)]])
    r, task = await _handled_with_commit_in_flight(fake)
    fake.fail = RuntimeError("broker gone")
    r.request_stop()
    await task
    fake.release.set()
    await r.stop()  # logs the failure; the record comes again after a restart
    assert fake.committed == []
    assert fake.stopped


async def test_every_log_line_of_a_handled_event_names_its_trace_and_event() -> None:
    import json
    import logging

    from fedbus.telemetry import JsonFormatter

    class Lines(logging.Handler):  # formats when the line is written, as the service's does
        def __init__(self) -> None:
            super().__init__()
            self.setFormatter(JsonFormatter("t"))
            self.lines: list[dict[str, Any]] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.lines.append(json.loads(self.format(record)))

    event, lines, logger = progress(), Lines(), logging.getLogger("fedbus.test.handler")

    async def handler(got: Progress) -> list[Event]:
        logger.warning("handling")
        return []

    logger.addHandler(lines)
    try:
        await runner(handler, FakePublisher()).handle_record(record(encode(event)))
    finally:
        logger.removeHandler(lines)

    assert [(line["trace_id"], line["event_id"]) for line in lines.lines] == [
        (event.traceparent.split("-")[1], event.event_id)
    ]
