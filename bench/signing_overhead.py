"""What signing costs the bus: Ed25519 per event, and producer and consumer throughput with
signatures on and off, same broker, same run.

1 KB ``progress`` events through the local broker (`make up`). Three measurements:

1. CPU: microseconds to encode, sign and verify one event (``fedbus.bus.signing``);
2. producer: events/s of one producer process (``EventProducer.publish_many``, 500 at a
   time) unsigned, then signing every record; rounds alternate, the median is reported;
3. consumer: events/s of a ``ConsumerRunner`` draining those events, without a key
   directory, then verifying every signature (and the signer's role and bound fields)
   with signatures required.

Goal (issue "Auditors"): signing costs the producer <= 15% of its throughput.

    .venv/bin/python bench/signing_overhead.py [--events 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fedbus.bus import ConsumerRunner, EventProducer, InMemoryIdempotencyStore, ensure_topics
from fedbus.bus.codec import encode_event
from fedbus.bus.signing import (
    KEY_TOPIC,
    KeyDirectory,
    Signer,
    generate_key,
    key_record,
    load_private_key,
    write_private_key,
)
from fedbus.bus.topics import catalog, reset_group_to_end
from fedbus.events import Event, Phase, Progress
from fedbus.settings import FedbusSettings, load_settings

PAD = "x" * 700  # with the envelope, each JSON event is about 1 KB
CT = [("content-type", b"application/json")]


def _progress(job: str, step: int) -> Progress:
    return Progress.create(source="bench", job_id=job, phase=Phase.TRAINING, message=PAD, step=step)


def cpu_costs(n: int = 6_400) -> dict[str, float]:
    """Microseconds per event to encode, and to sign and verify one record alone and in
    batches of SIGN_BATCH (the producer's publish_many)."""
    from fedbus.bus.producer import SIGN_BATCH

    key, root = generate_key(), generate_key()
    signer = Signer(key)
    record = key_record(key, principal="bench", role="operator")
    value = encode_event(record)
    headers = Signer(root).sign(KEY_TOPIC, record.kafka_key(), value, CT)
    events = [_progress("bench-cpu", i) for i in range(n)]
    t0 = time.perf_counter()
    values = [encode_event(e) for e in events]
    t1 = time.perf_counter()
    alone = [signer.sign("progress", b"bench-cpu", v, CT) for v in values]
    t2 = time.perf_counter()
    records = [("progress", b"bench-cpu", v, CT) for v in values]
    batched: list[list[tuple[str, bytes]]] = []
    for i in range(0, n, SIGN_BATCH):
        batched += signer.sign_batch(records[i : i + SIGN_BATCH])
    t3 = time.perf_counter()
    timings = {"encode": t1 - t0, "sign": t2 - t1, "sign batched": t3 - t2}
    for label, signed in (("verify", alone), ("verify batched", batched)):
        directory = KeyDirectory([root.public_key()], catalog())
        directory.add_record(record.kafka_key(), value, headers)
        start = time.perf_counter()
        for v, h in zip(values, signed, strict=True):
            directory.verify_signature("progress", b"bench-cpu", v, h)
        timings[label] = time.perf_counter() - start
    return {k: t / n * 1e6 for k, t in timings.items()}


async def _produce(n: int, job: str, key_file: str) -> float:
    settings = load_settings().model_copy(
        update={"signing_key_file": Path(key_file) if key_file else None}
    )
    async with EventProducer(settings, client_id="bench") as producer:
        start = time.perf_counter()
        for i in range(0, n, 500):
            batch: Iterator[Event] = (_progress(job, i + k) for k in range(min(500, n - i)))
            await producer.publish_many(batch)
        return n / (time.perf_counter() - start)


def _child(n: int, job: str, key_file: str, out: Any) -> None:
    out.value = asyncio.run(_produce(n, job, key_file))


def produce_in_child(n: int, job: str, key_file: str) -> float:
    ctx = mp.get_context("spawn")
    rate = ctx.Value("d", 0.0)
    proc = ctx.Process(target=_child, args=(n, job, key_file, rate))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"producer process failed ({proc.exitcode})")
    return float(rate.value)


async def _drain_after(
    settings: FedbusSettings, n: int, job: str, directory: KeyDirectory | None, group: str
) -> float:
    seen = 0
    done = asyncio.Event()
    first: list[float] = []

    async def on_progress(event: Event) -> None:
        nonlocal seen
        if event.job_id == job:
            if not first:
                first.append(time.perf_counter())
            seen += 1
            if seen == n:
                done.set()

    producer = EventProducer(
        settings.model_copy(update={"signing_key_file": None}), client_id="bench"
    )
    await producer.start()
    runner = ConsumerRunner(
        settings, group_id=group, handlers={Progress: on_progress}, producer=producer,
        idempotency=InMemoryIdempotencyStore(), keys=directory,
        require_signatures=directory is not None,
    )  # fmt: skip
    await runner.start()
    start = time.perf_counter()
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(done.wait(), timeout=300)
    took = time.perf_counter() - start
    runner.request_stop()
    await task
    await runner.stop()
    await producer.stop()
    return n / took


async def main(n: int, rounds: int) -> None:
    settings = load_settings()
    await ensure_topics(settings)
    costs = cpu_costs()
    print(f"{n} events of {len(encode_event(_progress('bench-00000000', 1)))} bytes, one broker")
    print("CPU per 1 KB event: " + ", ".join(f"{k} {v:.1f} us" for k, v in costs.items()))
    with tempfile.TemporaryDirectory() as tmp:
        key_file = Path(tmp) / "bench.pem"
        write_private_key(key_file, generate_key())
        key = load_private_key(key_file)
        root = generate_key()
        directory = KeyDirectory([root.public_key()], catalog())
        record = key_record(key, principal="bench", role="operator")
        value = encode_event(record)
        directory.add_record(
            record.kafka_key(), value, Signer(root).sign(KEY_TOPIC, record.kafka_key(), value, CT)
        )
        produced: dict[str, list[float]] = {"unsigned": [], "signed": []}
        drained: dict[str, list[float]] = {"unsigned": [], "signed": []}
        for r in range(rounds):
            for label, path in (("unsigned", ""), ("signed", str(key_file))):
                job = f"bench-{uuid.uuid4().hex[:8]}"
                group = f"bench-sig-{uuid.uuid4().hex[:8]}"
                await reset_group_to_end(settings, "progress", group)
                produced[label].append(produce_in_child(n, job, path))
                checker = directory if label == "signed" else None
                drained[label].append(await _drain_after(settings, n, job, checker, group))
                print(
                    f"  round {r + 1} {label:8}: producer {produced[label][-1]:9,.0f} events/s, "
                    f"consumer {drained[label][-1]:9,.0f} events/s",
                    flush=True,
                )
    p = {k: statistics.median(v) for k, v in produced.items()}
    c = {k: statistics.median(v) for k, v in drained.items()}
    print(
        f"median producer: unsigned {p['unsigned']:,.0f}/s, signed {p['signed']:,.0f}/s "
        f"(cost {1 - p['signed'] / p['unsigned']:.1%})"
    )
    print(
        f"median consumer: unchecked {c['unsigned']:,.0f}/s, verified {c['signed']:,.0f}/s "
        f"(cost {1 - c['signed'] / c['unsigned']:.1%})"
    )
    print("goal: signing costs the producer <= 15% of its throughput")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rounds))
