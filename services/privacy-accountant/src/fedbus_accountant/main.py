"""Wiring only: settings, adapters, handlers, then run until SIGTERM.

``fedbus-privacy-accountant`` or ``python -m fedbus_accountant``; configured by ``FEDBUS_*``
variables (see :class:`~fedbus_accountant.settings.AccountantSettings`).
``--reset-state`` drops the accountant's tables and exits: start it again with a new
``FEDBUS_CONSUMER_GROUP`` and it rebuilds its ledger from the beginning of the topics.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence

import asyncpg

from fedbus.bus import ConsumerRunner, EventProducer, PostgresIdempotencyStore, ensure_topics
from fedbus.service import Service
from fedbus.settings import load_settings
from fedbus.telemetry import configure_logging
from fedbus_accountant.adapters import PostgresAccountantStore, drop_state
from fedbus_accountant.handlers import SOURCE, bind_handlers
from fedbus_accountant.settings import AccountantSettings

__all__ = ["main", "reset_state", "run"]

log = logging.getLogger(__name__)


async def main(settings: AccountantSettings) -> None:
    """Run the accountant: consume job, update and round events, publish budgets."""
    await ensure_topics(settings)
    pool = await _pool(settings, size=4)
    producer = EventProducer(settings, client_id=SOURCE)
    try:
        store = await PostgresAccountantStore.create(pool)
        runner = ConsumerRunner(
            settings,
            group_id=settings.consumer_group,
            handlers=bind_handlers(store=store, lifetime_epsilon=settings.client_lifetime_epsilon),
            producer=producer,
            idempotency=await PostgresIdempotencyStore.create(pool),
        )
        service = Service(SOURCE, settings)
        await producer.start()
        await runner.start()
        service.add_readiness("kafka", lambda: True)
        log.info("consuming %s as group %s", ", ".join(runner.topics), settings.consumer_group)
        try:
            await service.run(runner.run())
        finally:
            await runner.stop()
    finally:
        await producer.stop()
        await pool.close()


async def reset_state(settings: AccountantSettings) -> None:
    """Drop the accountant's tables (and its group's handled-event records)."""
    pool = await _pool(settings, size=1)
    try:
        await drop_state(pool, consumer_group=settings.consumer_group)
    finally:
        await pool.close()
    log.info("accountant state dropped (group %s forgotten)", settings.consumer_group)


async def _pool(settings: AccountantSettings, *, size: int) -> asyncpg.Pool:
    """A pool whose connections find (and create) tables in the accountant's schema."""
    schema = settings.accountant_schema  # validated as a plain identifier
    dsn = settings.postgres_dsn.get_secret_value()
    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=size, server_settings={"search_path": schema}
    )
    await pool.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    return pool


def run(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    parser = argparse.ArgumentParser(prog="fedbus-privacy-accountant")
    parser.add_argument(
        "--reset-state",
        action="store_true",
        help="drop the accountant's tables and exit (restart with a new consumer group)",
    )
    args = parser.parse_args(argv)
    settings = load_settings(AccountantSettings)
    configure_logging(SOURCE, settings.log_level)
    asyncio.run(reset_state(settings) if args.reset_state else main(settings))
