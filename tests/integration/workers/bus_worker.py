"""A real consumer process for the bus integration tests.

It runs :class:`fedbus.bus.ConsumerRunner` on the ``progress`` topic with a PostgreSQL
idempotency store. Its handler records each ``progress`` event of jobs whose id starts with
``$WORKER_JOB_PREFIX`` as a row in ``bus_effects`` (one row per application, so applying an
event twice would show as two rows). ``$WORKER_COMMIT_INTERVAL_S`` delays offset commits, which
lets a test kill the process after handling and before committing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import asyncpg

from fedbus.bus import ConsumerRunner, EventProducer, PostgresIdempotencyStore, ensure_topics
from fedbus.events import Event, Progress
from fedbus.settings import load_settings

EFFECTS_DDL = """CREATE TABLE IF NOT EXISTS bus_effects (
    seq bigserial PRIMARY KEY, job_id text NOT NULL, event_id text NOT NULL, step bigint
)"""


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    settings = load_settings()
    prefix = os.environ["WORKER_JOB_PREFIX"]
    await ensure_topics(settings)
    pool = await asyncpg.create_pool(settings.postgres_dsn.get_secret_value(), min_size=1)
    await pool.execute(EFFECTS_DDL)
    store = await PostgresIdempotencyStore.create(pool)

    async def on_progress(event: Progress) -> list[Event]:
        if event.job_id.startswith(prefix):
            await pool.execute(
                "INSERT INTO bus_effects (job_id, event_id, step) VALUES ($1, $2, $3)",
                event.job_id,
                event.event_id,
                event.step,
            )
        return []

    producer = EventProducer(settings, client_id="bus-worker")
    await producer.start()
    runner = ConsumerRunner(
        settings,
        group_id=os.environ["WORKER_GROUP"],
        handlers={Progress: on_progress},
        producer=producer,
        idempotency=store,
        commit_interval_s=float(os.environ.get("WORKER_COMMIT_INTERVAL_S", "0")),
    )
    await runner.start()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, runner.request_stop)
    print("worker ready", flush=True)
    try:
        await runner.run()
    finally:
        await runner.stop()
        await producer.stop()
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
