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
from typing import Any

import asyncpg

from fedbus.service import ServiceRuntime
from fedbus.settings import load_settings
from fedbus.telemetry import configure_logging
from fedbus_accountant.adapters import PostgresAccountantStore, drop_state
from fedbus_accountant.deps import Deps
from fedbus_accountant.handlers import HANDLERS, SOURCE
from fedbus_accountant.settings import AccountantSettings

__all__ = ["main", "reset_state", "run"]

log = logging.getLogger(__name__)


async def main(settings: AccountantSettings) -> None:
    """Run the accountant: consume job, update and round events, publish budgets."""
    async with ServiceRuntime.open(SOURCE, settings, pool_options=_in_schema(settings)) as rt:
        # The schema must exist before the store (and the handled-event ids) make tables in it.
        await _create_schema(rt.pool, settings)
        store = await PostgresAccountantStore.create(rt.pool)
        rt.watch("postgres", store.ping)
        deps = Deps(store=store, lifetime_epsilon=settings.client_lifetime_epsilon)
        await rt.run(HANDLERS, deps, group_id=settings.consumer_group)


async def reset_state(settings: AccountantSettings) -> None:
    """Drop the accountant's tables (and its group's handled-event records)."""
    dsn = settings.postgres_dsn.get_secret_value()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1, **_in_schema(settings))
    try:
        await _create_schema(pool, settings)
        await drop_state(pool, consumer_group=settings.consumer_group)
    finally:
        await pool.close()
    log.info("accountant state dropped (group %s forgotten)", settings.consumer_group)


def _in_schema(settings: AccountantSettings) -> dict[str, Any]:
    """Pool options whose connections find (and create) tables in the accountant's schema."""
    return {"server_settings": {"search_path": settings.accountant_schema}}


async def _create_schema(pool: asyncpg.Pool, settings: AccountantSettings) -> None:
    schema = settings.accountant_schema  # validated as a plain identifier
    await pool.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")


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
