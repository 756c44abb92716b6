"""Orchestration killed with SIGKILL between rounds: restarted, it continues the job from
PostgreSQL and Kafka without starting any round twice.

Its own module, so that no other orchestration process of this test run shares its work.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from fedbus.bus import EventProducer
from fedbus.events import JobCompleted, RoundStarted
from fedbus.settings import FedbusSettings

from .harness import EventWatcher, fresh_group, unique
from .test_orchestration_service import (
    CONSUMED,
    WATCHED,
    Orchestration,
    _announce_trainers,
    _completed,
    _is,
    _request,
)


class Watcher(EventWatcher):
    """An :class:`EventWatcher` that can read everything published so far."""

    async def __aenter__(self) -> Watcher:
        await super().__aenter__()
        return self

    async def read_to_end(self, *, limit_s: float = 30) -> None:
        """Poll until every watched partition is read up to the end it has now."""
        ends = await self._consumer.end_offsets(list(self._consumer.assignment()))
        deadline = time.monotonic() + limit_s
        while any([await self._consumer.position(tp) < end for tp, end in ends.items()]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"watched topics not read to their end in {limit_s}s")
            await self.poll()


async def _caught_up(
    settings: FedbusSettings, group: str, topics: Sequence[str], *, limit_s: float = 60
) -> None:
    """Wait until consumer group ``group`` has committed every record now on ``topics``."""
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), group_id=group, enable_auto_commit=False
    )
    await consumer.start()  # no subscription: it reads the group's offsets, never joins it
    try:
        await consumer.topics()
        parts = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        ends = await consumer.end_offsets(parts)
        deadline = time.monotonic() + limit_s
        while behind := [tp for tp in parts if (await consumer.committed(tp) or 0) < ends[tp]]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"group {group} has not handled {behind} in {limit_s}s")
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop()


async def test_a_killed_process_restarts_and_continues_without_repeating_a_round(
    settings: FedbusSettings, tmp_path: Path,
) -> None:  # fmt: skip
    orch = Orchestration(settings, tmp_path)
    await fresh_group(settings, orch.group, CONSUMED)
    producer = EventProducer(settings, client_id="orchestration-restart-test")
    await producer.start()
    try:
        proc = orch.start()
        dataset, ids = unique("digits"), [unique("client") for _ in range(3)]
        await _announce_trainers(settings, producer, dataset, ids)
        request = _request(dataset, rounds=3)
        async with Watcher(settings, WATCHED) as watch:
            await producer.publish(request)
            await watch.wait_for(_is(RoundStarted, request.job_id, round=1), limit_s=60)
            await producer.publish(_completed(request.job_id, 1))
            await watch.wait_for(_is(RoundStarted, request.job_id, round=2), limit_s=30)

            proc.stop(signal.SIGKILL)
            await producer.publish(_completed(request.job_id, 2))  # arrives while it is down
            await producer.publish(_completed(request.job_id, 1))  # a stale, late duplicate
            restarted = orch.start()
            await watch.wait_for(_is(RoundStarted, request.job_id, round=3), limit_s=60)
            await producer.publish(_completed(request.job_id, 3))
            await watch.wait_for(_is(JobCompleted, request.job_id), limit_s=30)
            # Anything repeated is on the bus by now: orchestration has handled and committed
            # every record of its topics (it publishes before it commits); then read it all.
            await _caught_up(settings, orch.group, CONSUMED)
            await watch.read_to_end()
    finally:
        orch.stop_all()
        await producer.stop()

    starts = {e.event_id: e for e in watch.seen if _is(RoundStarted, request.job_id)(e)}
    assert sorted(e.round for e in starts.values() if isinstance(e, RoundStarted)) == [1, 2, 3]
    ends = {e.event_id for e in watch.seen if _is(JobCompleted, request.job_id)(e)}
    assert len(ends) == 1
    log = restarted.text()
    assert "round.completed handled: job running, round 3 attempt 1" in log  # it did the work
    assert "round.completed ignored" in log  # the stale round-1 result
