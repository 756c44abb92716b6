"""Bus throughput and latency: fedbus's producer + ConsumerRunner vs raw aiokafka, same run.

1 KB events through the local broker (`make up`); producers run in their own process, the
consumer in this one. Three paths: fedbus; raw aiokafka with a JSON object per event
(``json.dumps`` to send, ``json.loads`` on receipt, nothing else); raw aiokafka moving opaque
bytes. Three measurements for each:

1. producer: events/s of one producer process publishing N events as fast as it can
   (fedbus: ``Progress.create`` + ``EventProducer.publish_many``, 500 at a time, which packs
   them into record batches with aiokafka's batch API; raw: ``AIOKafkaProducer.send`` of
   ready-made bytes, 500 in flight, as aiokafka is commonly used);
2. consumer: events/s of one consumer process draining those N events once they are all on
   the topic as each path's producer wrote them (fedbus's full batches are cheaper to fetch)
   (fedbus: ``ConsumerRunner`` decoding, validating, deduplicating and committing after each
   batch; raw: ``getmany`` + commit), first to last event;
3. latency: p50/p99 from an event's creation to its handling while a producer publishes at a
   steady offered load (``--rate``), and the same at saturation (the producer of 1. running
   while the consumer reads: queueing then dominates the tail).

    .venv/bin/python bench/bus_throughput.py [--events 20000] [--rate 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from fedbus.bus import (
    ConsumerRunner,
    EventProducer,
    InMemoryIdempotencyStore,
    ensure_topics,
    reset_group_to_end,
)
from fedbus.bus.consumer import consumer_options
from fedbus.bus.producer import producer_options
from fedbus.events import Event, Phase, Progress, encode
from fedbus.settings import FedbusSettings, load_settings

PAD = "x" * 700  # with the envelope, each JSON event is about 1 KB
IN_FLIGHT = 500


@dataclass
class Received:
    """What a consumer saw: send stamps and handling times of the expected events."""

    n: int
    sent: list[float] = field(default_factory=list)
    handled: list[float] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    produced: float = 0.0  # events/s of the producer that filled the topic, when it ran first

    def add(self, sent: float) -> None:
        self.sent.append(sent)
        self.handled.append(time.time())
        if len(self.handled) >= self.n:
            self.done.set()

    def rate(self) -> float:
        """Events per second from the first handled event to the last."""
        return (len(self.handled) - 1) / (self.handled[-1] - self.handled[0])

    def latency_ms(self) -> tuple[float, float]:
        waits = [h - s for h, s in zip(self.handled, self.sent, strict=True)]
        q = statistics.quantiles(waits, n=100)
        return q[49] * 1e3, q[98] * 1e3


# -- producers (each in its own process) ---------------------------------------------------


def _progress(job: str, step: int) -> Progress:
    return Progress.create(
        source="bench", job_id=job, phase=Phase.TRAINING, message=PAD, step=step,
        metrics={"sent": time.time()},
    )  # fmt: skip


async def _produce_library(n: int, job: str, rate: float) -> float:
    settings = load_settings()
    async with EventProducer(settings, client_id="bench") as producer:
        start = time.perf_counter()
        chunk = IN_FLIGHT if rate <= 0 else max(1, int(rate / 100))
        for i in range(0, n, chunk):
            if rate > 0:  # paced: chunk events every chunk / rate seconds
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            # A generator: each event is created (and stamped) just before it is sent.
            batch: Iterator[Event] = (_progress(job, i + k) for k in range(min(chunk, n - i)))
            await producer.publish_many(batch)
        took = time.perf_counter() - start
        print(f"  fedbus producer process: {n / took:10,.0f} events/s", flush=True)
        return n / took


async def _produce_raw(n: int, topic: str, rate: float) -> float:
    """Raw aiokafka; a ``.json`` topic gets a JSON object serialised per event."""
    # aiokafka as it comes, with fedbus's durability settings (acks=all, idempotence)
    options = {**producer_options(load_settings()), "partitioner": DefaultPartitioner()}
    producer = AIOKafkaProducer(**options)
    await producer.start()
    as_json = topic.endswith(".json")
    template = _progress("bench-raw", 0).model_dump(mode="json")
    body = PAD.encode() + b"x" * 300

    def value() -> bytes:
        if as_json:
            return json.dumps({**template, "metrics": {"sent": time.time()}}).encode()
        return f"{time.time():<20.6f}".encode() + body

    start = time.perf_counter()
    chunk = IN_FLIGHT if rate <= 0 else max(1, int(rate / 100))
    for i in range(0, n, chunk):
        if rate > 0:
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        futures = [
            await producer.send(topic, value(), key=b"job") for _ in range(min(chunk, n - i))
        ]
        await asyncio.gather(*futures)
    label = "raw+json" if as_json else "raw"
    produced = n / (time.perf_counter() - start)
    print(f"  {label} producer process: {produced:10,.0f} events/s")
    await producer.stop()
    return produced


class Child:
    """A producer process; ``rate`` is its events/s once it has ended."""

    def __init__(self, target: Callable[[int, str, float], Awaitable[float]], *args: Any) -> None:
        ctx = mp.get_context("spawn")
        self._rate = ctx.Value("d", 0.0)
        self._proc = ctx.Process(target=_run_child, args=(target.__name__, *args, self._rate))
        self._proc.start()

    async def join(self) -> float:
        await asyncio.to_thread(self._proc.join)
        if self._proc.exitcode != 0:
            raise SystemExit(f"a producer process failed (exit code {self._proc.exitcode})")
        return float(self._rate.value)


def _run_child(name: str, n: int, arg: str, rate: float, out: Any) -> None:
    out.value = asyncio.run(globals()[name](n, arg, rate))


# -- consumers (in this process) ------------------------------------------------------------


class LibraryPath:
    """fedbus: EventProducer in a child process, ConsumerRunner here, on topic `progress`."""

    name = "fedbus"

    def __init__(self, settings: FedbusSettings) -> None:
        self.settings = settings

    async def run(self, n: int, *, rate: float, prefill: bool) -> Received:
        group, job = f"bench-{uuid.uuid4().hex[:8]}", f"bench-{uuid.uuid4().hex[:8]}"
        await reset_group_to_end(self.settings, "progress", group)
        got = Received(n)

        async def on_progress(event: Progress) -> None:
            if event.job_id == job:
                got.add(event.metrics["sent"])

        if prefill:
            got.produced = await Child(_produce_library, n, job, 0.0).join()
        producer = EventProducer(self.settings, client_id="bench")
        await producer.start()
        runner = ConsumerRunner(
            self.settings, group_id=group, handlers={Progress: on_progress}, producer=producer,
            idempotency=InMemoryIdempotencyStore(),
        )  # fmt: skip
        await runner.start()
        task = asyncio.create_task(runner.run())
        child = None
        if not prefill:
            await asyncio.sleep(2)  # let the group settle before the producer starts
            child = Child(_produce_library, n, job, rate)
        await asyncio.wait_for(got.done.wait(), timeout=300)
        if child is not None:
            await child.join()
        runner.request_stop()
        await task
        await runner.stop()
        await producer.stop()
        return got


class RawPath:
    """Raw aiokafka: AIOKafkaProducer in a child process, getmany + commit here.

    ``json=False`` moves opaque bytes (the stamp is the first 20 bytes); ``json=True``
    serialises a JSON object per event and parses it on receipt, the least a consumer of
    JSON events does (no schema validation, deduplication, metrics or dead letters).
    """

    def __init__(self, settings: FedbusSettings, *, json: bool) -> None:
        self.settings = settings
        self.json = json
        self.name = "raw+json" if json else "raw"

    async def run(self, n: int, *, rate: float, prefill: bool) -> Received:
        topic = f"bench.raw.{uuid.uuid4().hex[:8]}" + (".json" if self.json else "")
        admin = AIOKafkaAdminClient(**self.settings.kafka_client_options())
        await admin.start()
        await admin.create_topics([NewTopic(topic, 6, 1)])
        await admin.close()
        got = Received(n)
        if prefill:
            got.produced = await Child(_produce_raw, n, topic, 0.0).join()
        consumer = AIOKafkaConsumer(topic, **consumer_options(self.settings, group_id=topic))
        await consumer.start()

        async def consume() -> None:
            while len(got.handled) < n:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    for r in records:
                        if self.json:
                            got.add(json.loads(r.value)["metrics"]["sent"])
                        else:
                            got.add(float(r.value[:20]))
                await consumer.commit()

        task = asyncio.create_task(consume())
        child = None
        if not prefill:
            await asyncio.sleep(2)
            child = Child(_produce_raw, n, topic, rate)
        await asyncio.wait_for(task, timeout=300)
        if child is not None:
            await child.join()
        await consumer.stop()
        return got


async def main(n: int, rate: float) -> None:
    settings = load_settings()
    await ensure_topics(settings)
    size = len(encode(_progress("bench-00000000", 1)))
    print(f"{n} events of {size} bytes (JSON), one broker, producer and consumer processes")
    paths = [LibraryPath(settings), RawPath(settings, json=True), RawPath(settings, json=False)]
    results: dict[str, dict[str, Any]] = {p.name: {} for p in paths}
    for path in paths:
        print(f"[{path.name}] producer throughput, then consumer drain of the {n} events:")
        drained = await path.run(n, rate=0.0, prefill=True)
        results[path.name]["drain"] = drained.rate()
        results[path.name]["produce"] = drained.produced
        print(f"  {path.name} consumer drain:    {drained.rate():10,.0f} events/s")
        paced = await path.run(n, rate=rate, prefill=False)
        results[path.name]["paced"] = paced.latency_ms()
        p50, p99 = paced.latency_ms()
        print(
            f"  {path.name} at {rate:,.0f} events/s offered: p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
        )
        flooded = await path.run(n, rate=0.0, prefill=False)
        p50, p99 = flooded.latency_ms()
        results[path.name]["flood"] = flooded.rate()
        print(
            f"  {path.name} at saturation: {flooded.rate():10,.0f} events/s end to end, "
            f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
        )
    lib = results["fedbus"]
    for base in ("raw+json", "raw"):
        raw = results[base]
        print(
            f"fedbus/{base}: producer {lib['produce'] / raw['produce']:.0%}, "
            f"consumer drain {lib['drain'] / raw['drain']:.0%}, end to end at "
            f"saturation {lib['flood'] / raw['flood']:.0%}; p99 at {rate:,.0f}/s: "
            f"fedbus {lib['paced'][1]:.1f} ms, {base} {raw['paced'][1]:.1f} ms"
        )
    print("goal: >= 10,000 events/s per process, p99 <= 50 ms, within 20% of raw aiokafka")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=5_000, help="offered load for latency")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rate))
