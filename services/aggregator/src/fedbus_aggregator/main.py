"""Wiring only: settings, adapters, handlers, the deadline task, and the service loop.

Run ``fedbus-aggregator --eval-data NAME=PATH`` (or ``python -m fedbus_aggregator``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from fedbus.bus import (
    ConsumerRunner,
    EventProducer,
    PostgresIdempotencyStore,
    Publisher,
    ensure_topics,
)
from fedbus.errors import FedbusError
from fedbus.service import Service
from fedbus.settings import load_settings
from fedbus.storage import S3ArtifactStore
from fedbus.telemetry import configure_logging
from fedbus_aggregator.adapters.executor import ExecutorModels
from fedbus_aggregator.adapters.postgres import PostgresRoundStore
from fedbus_aggregator.handlers import bind, close_due_rounds
from fedbus_aggregator.runtime import Deps, UpdateCache
from fedbus_aggregator.settings import AggregatorSettings

__all__ = ["parse_args", "run", "serve"]

log = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None = None) -> dict[str, Path]:
    """The ``--eval-data NAME=PATH`` pairs of the command line."""
    parser = argparse.ArgumentParser(prog="fedbus-aggregator", description=__doc__)
    parser.add_argument(
        "--eval-data",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="held-out test.parquet of dataset NAME (repeatable)",
    )
    args = parser.parse_args(argv)
    pairs: dict[str, Path] = {}
    for item in args.eval_data:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            parser.error(f"--eval-data wants NAME=PATH, got {item!r}")
        pairs[name] = Path(path)
    return pairs


def run(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``fedbus-aggregator``."""
    eval_data = parse_args(argv)
    settings = load_settings(AggregatorSettings)
    configure_logging("aggregator", settings.log_level)
    asyncio.run(serve(settings, {**settings.eval_data, **eval_data}))


@dataclass
class _Health:
    consumer: bool = False
    postgres: bool = False
    minio: bool = False


async def serve(settings: AggregatorSettings, eval_data: dict[str, Path]) -> None:
    """Build the adapters and run the consumer and the deadline task until stopped."""
    models = ExecutorModels(eval_data, device=settings.eval_device)
    log.info("evaluating on datasets %s", models.datasets)
    await ensure_topics(settings)
    pool = await asyncpg.create_pool(
        settings.postgres_dsn.get_secret_value(), min_size=1, max_size=4
    )
    producer = EventProducer(settings, client_id="aggregator")
    health = _Health()
    try:
        store = await PostgresRoundStore.create(pool)
        artifacts = S3ArtifactStore.from_settings(settings)
        await artifacts.ensure_bucket()
        health.postgres = health.minio = True
        deps = Deps(
            store,
            artifacts,
            models,
            max_update_norm=settings.max_update_norm,
            updates=UpdateCache(settings.update_cache_mb * 2**20),
        )
        await producer.start()
        runner = ConsumerRunner(
            settings,
            group_id=settings.consumer_group,
            handlers=bind(deps),
            producer=producer,
            idempotency=await PostgresIdempotencyStore.create(pool),
        )
        await runner.start()
        health.consumer = True
        service = Service("aggregator", settings)
        service.add_readiness("consumer", lambda: health.consumer)
        service.add_readiness("postgres", lambda: health.postgres)
        service.add_readiness("minio", lambda: health.minio)
        try:
            await service.run(
                runner.run(),
                _deadlines(deps, producer, settings.deadline_poll_seconds),
                _watch(health, store, artifacts),
            )
        finally:
            health.consumer = False
            await runner.stop()
    finally:
        await producer.stop()
        await pool.close()


async def _deadlines(deps: Deps, publisher: Publisher, every_s: float) -> None:
    while True:
        await close_due_rounds(deps=deps, publisher=publisher)
        await asyncio.sleep(every_s)


async def _watch(health: _Health, store: PostgresRoundStore, artifacts: S3ArtifactStore) -> None:
    while True:
        await asyncio.sleep(5)
        health.postgres = await store.ping()
        try:
            await artifacts.ensure_bucket()
            health.minio = True
        except FedbusError:
            health.minio = False
