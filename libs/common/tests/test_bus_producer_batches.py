"""``EventProducer.publish_many``'s packing, with a fake aiokafka producer: order across keyed
and keyless events, full batches, and what a cancelled call does not send.
(The real broker's view is in tests/integration/test_producer_batches.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fedbus.bus import EventProducer
from fedbus.bus import producer as producer_module
from fedbus.events import Event, Phase, Progress, decode
from fedbus.settings import FedbusSettings


class FakeBatch:
    def __init__(self, capacity: int) -> None:
        self.values: list[bytes] = []
        self.closed = False
        self._capacity = capacity

    def append(self, *, timestamp: Any, key: bytes | None, value: bytes, headers: Any) -> Any:
        if self.closed or len(self.values) >= self._capacity:
            return None
        self.values.append(value)
        return object()

    def close(self) -> None:
        self.closed = True


class FakeKafka:
    """create_batch / send_batch / partitions_for as aiokafka's producer has them."""

    def __init__(self, partitions: int = 1, capacity: int = 3) -> None:
        self.sent: list[tuple[str, int, FakeBatch]] = []
        self.gate: asyncio.Event | None = None
        self._partitions, self._capacity = partitions, capacity

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self._partitions))

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self._capacity)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        if self.gate is not None:
            await self.gate.wait()
        assert batch.closed, "a batch is closed before it is handed over (no linger)"
        self.sent.append((topic, partition, batch))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def _producer(kafka: FakeKafka) -> EventProducer:
    producer = EventProducer(FedbusSettings(_env_file=None), client_id="t")  # type: ignore[call-arg]
    producer._producer = kafka
    return producer


def _events(n: int) -> list[Progress]:
    return [
        Progress.create(source="t", job_id="job-1", phase=Phase.TRAINING, message="m", step=i)
        for i in range(n)
    ]


def _steps(kafka: FakeKafka) -> list[int | None]:
    out: list[int | None] = []
    for _, _, batch in kafka.sent:
        out += [e.step for e in map(decode, batch.values) if isinstance(e, Progress)]
    return out


async def test_events_are_packed_in_order_into_full_batches() -> None:
    kafka = FakeKafka(capacity=3)

    await _producer(kafka).publish_many(_events(7))

    assert [len(b.values) for _, _, b in kafka.sent] == [3, 3, 1]
    assert _steps(kafka) == list(range(7))


async def test_keyless_events_keep_their_place_among_keyed_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kafka = FakeKafka(partitions=1, capacity=10)
    events = _events(5)
    keyless = {events[1].event_id, events[3].event_id}

    def key(event: Event) -> bytes | None:
        return None if event.event_id in keyless else event.job_id.encode()

    monkeypatch.setattr(producer_module, "event_key", key)

    await _producer(kafka).publish_many(events)

    assert _steps(kafka) == [0, 1, 2, 3, 4]  # one partition, one batch, the order given


async def test_a_cancelled_publish_sends_nothing_more() -> None:
    kafka = FakeKafka(capacity=2)
    kafka.gate = asyncio.Event()  # the first full batch waits (a queue ahead of it)
    task = asyncio.create_task(_producer(kafka).publish_many(_events(5)))
    await asyncio.sleep(0.05)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    kafka.gate.set()
    await asyncio.sleep(0.05)

    assert kafka.sent == []  # neither the waiting batch nor the packed rest went out
