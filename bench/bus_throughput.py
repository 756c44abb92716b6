"""Bus throughput and latency: fedbus's producer + ConsumerRunner vs raw aiokafka, same run.

1 KB events through the local broker (`make up`); the producer runs in its own process, the
consumer in this one. Prints the producer's and the consumer's events/s and the p50/p99
publish-to-handle latency for both paths.

    .venv/bin/python bench/bus_throughput.py [--events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

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


def _report(name: str, n: int, seconds: float, latencies: list[float]) -> float:
    q = statistics.quantiles(latencies, n=100)
    rate = n / seconds
    print(
        f"{name:10} consumer {rate:10,.0f} events/s   "
        f"p50 {q[49] * 1e3:6.1f} ms   p99 {q[98] * 1e3:6.1f} ms"
    )
    return rate


async def bench_library(settings: FedbusSettings, n: int) -> float:
    group, job = f"bench-{uuid.uuid4().hex[:8]}", f"bench-{uuid.uuid4().hex[:8]}"
    await reset_group_to_end(settings, "progress", group)
    latencies: list[float] = []
    span = [float("inf"), 0.0]
    done = asyncio.Event()

    async def on_progress(event: Progress) -> None:
        if event.job_id == job:
            now = time.time()
            latencies.append(now - event.metrics["sent"])
            span[0], span[1] = min(span[0], event.metrics["sent"]), now
            if len(latencies) == n:
                done.set()

    producer = EventProducer(settings, client_id="bench")
    await producer.start()
    runner = ConsumerRunner(
        settings,
        group_id=group,
        handlers={Progress: on_progress},
        producer=producer,
        idempotency=InMemoryIdempotencyStore(),
    )
    await runner.start()
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(2)  # let the group settle
    start = time.perf_counter()
    child = _spawn(_produce_library, n, job)
    await asyncio.wait_for(done.wait(), timeout=300)
    elapsed = time.perf_counter() - start
    child.join()
    runner.request_stop()
    await task
    await runner.stop()
    await producer.stop()
    return _report("fedbus", n, elapsed, latencies)


async def bench_raw(settings: FedbusSettings, n: int) -> float:
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    await admin.create_topics([NewTopic(topic, 6, 1)])
    await admin.close()
    consumer = AIOKafkaConsumer(topic, **consumer_options(settings, group_id=topic))
    await consumer.start()
    latencies: list[float] = []
    span = [float("inf"), 0.0]

    async def consume() -> None:
        while len(latencies) < n:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                now = time.time()
                for r in records:
                    sent = float(r.value[:20])
                    latencies.append(now - sent)
                    span[0], span[1] = min(span[0], sent), now
            await consumer.commit()

    task = asyncio.create_task(consume())
    await asyncio.sleep(2)
    start = time.perf_counter()
    child = _spawn(_produce_raw, n, topic)
    await asyncio.wait_for(task, timeout=300)
    elapsed = time.perf_counter() - start
    child.join()
    await consumer.stop()
    return _report("raw", n, elapsed, latencies)


def _spawn(target: Callable[[int, str], Awaitable[None]], n: int, arg: str) -> mp.Process:
    proc = mp.get_context("spawn").Process(target=_run_child, args=(target.__name__, n, arg))
    proc.start()
    return proc


def _run_child(name: str, n: int, arg: str) -> None:
    asyncio.run(globals()[name](n, arg))


async def _produce_library(n: int, job: str) -> None:
    settings = load_settings()
    async with EventProducer(settings, client_id="bench") as producer:
        start = time.perf_counter()
        for i in range(0, n, 500):
            batch: list[Event] = [
                Progress.create(
                    source="bench",
                    job_id=job,
                    phase=Phase.TRAINING,
                    message=PAD,
                    step=i + k,
                    metrics={"sent": time.time()},
                )
                for k in range(min(500, n - i))
            ]
            await producer.publish_many(batch)
        print(f"  fedbus producer process: {n / (time.perf_counter() - start):,.0f} events/s")


async def _produce_raw(n: int, topic: str) -> None:
    producer = AIOKafkaProducer(**producer_options(load_settings()))
    await producer.start()
    body = PAD.encode() + b"x" * 300
    start = time.perf_counter()
    for i in range(0, n, 500):
        futures = [
            await producer.send(topic, f"{time.time():<20.6f}".encode() + body, key=b"job")
            for _ in range(min(500, n - i))
        ]
        await asyncio.gather(*futures)
    print(f"  raw producer process:    {n / (time.perf_counter() - start):,.0f} events/s")
    await producer.stop()


async def main(n: int) -> None:
    settings = load_settings()
    await ensure_topics(settings)
    size = len(
        encode(
            Progress.create(
                source="bench",
                job_id="bench-00000000",
                phase=Phase.TRAINING,
                message=PAD,
                step=1,
                metrics={"sent": time.time()},
            )
        )
    )
    print(f"{n} events of {size} bytes (JSON), one broker, one process")
    raw = await bench_raw(settings, n)
    lib = await bench_library(settings, n)
    print(
        f"fedbus / raw throughput: {lib / raw:.0%}  (goal >= 80%, >= 10,000 events/s, p99 <= 50 ms)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().events))
