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
from dataclasses import dataclass

import asyncpg

from fedbus.bus import (
    ConsumerRunner,
    EventProducer,
    PostgresIdempotencyStore,
    Routes,
    ensure_topics,
    route,
)
from fedbus.events import Event, Progress
from fedbus.settings import FedbusSettings, load_settings

EFFECTS_DDL = """CREATE TABLE IF NOT EXISTS bus_effects (
    seq bigserial PRIMARY KEY, job_id text NOT NULL, event_id text NOT NULL, step bigint
)"""


@dataclass(frozen=True)
class Effects:
    """Where the handler records what it applied: ``bus_effects`` rows of matching jobs."""

    pool: asyncpg.Pool
    prefix: str


async def on_progress(event: Progress, *, deps: Effects) -> list[Event]:
    """Record ``event`` as one ``bus_effects`` row when its job is one of this test's."""
    if event.job_id.startswith(deps.prefix):
        await deps.pool.execute(
            "INSERT INTO bus_effects (job_id, event_id, step) VALUES ($1, $2, $3)",
            event.job_id,
            event.event_id,
            event.step,
        )
    return []


HANDLERS = Routes[Effects](route(Progress, on_progress))


async def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    settings = load_settings(FedbusSettings)
    prefix = os.environ["WORKER_JOB_PREFIX"]
    await ensure_topics(settings)
    pool = await asyncpg.create_pool(settings.postgres_dsn.get_secret_value(), min_size=1)
    await pool.execute(EFFECTS_DDL)
    store = await PostgresIdempotencyStore.create(pool)

    producer = EventProducer(settings, client_id="bus-worker")
    await producer.start()
    runner = ConsumerRunner(
        settings,
        group_id=os.environ["WORKER_GROUP"],
        handlers=HANDLERS.bind(Effects(pool=pool, prefix=prefix)),
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
