"""Wiring only: settings, PostgreSQL, Kafka, handlers, the deadline watcher, the ops server."""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from fedbus.bus import ConsumerRunner, EventProducer, PostgresIdempotencyStore, ensure_topics
from fedbus.service import Service
from fedbus.settings import load_settings
from fedbus.telemetry import configure_logging
from fedbus_orchestration.adapters.postgres import PostgresJobStore
from fedbus_orchestration.handlers import Context, bind
from fedbus_orchestration.jobs import Policy
from fedbus_orchestration.settings import OrchestrationSettings
from fedbus_orchestration.watcher import watch_deadlines

__all__ = ["context_from", "run", "serve"]

log = logging.getLogger(__name__)
NAME = "orchestration"


def context_from(settings: OrchestrationSettings, store: PostgresJobStore) -> Context:
    """The handlers' context as the settings describe it."""
    policy = Policy(
        max_round_retries=settings.max_round_retries,
        max_rollbacks=settings.max_rollbacks,
        divergence_factor=settings.divergence_factor,
        round_grace_seconds=settings.round_grace_seconds,
    )
    return Context(
        store=store,
        policy=policy,
        known_models=frozenset(settings.known_models),
        known_datasets=frozenset(settings.known_datasets),
        staleness_factor=settings.heartbeat_staleness_factor,
        lifetime_cap=settings.client_lifetime_epsilon,
    )


async def _probe(store: PostgresJobStore, status: dict[str, bool]) -> None:
    while True:
        status["postgres"] = await store.ping()
        await asyncio.sleep(2.0)


async def serve(settings: OrchestrationSettings) -> None:
    """Run orchestration until SIGTERM."""
    await ensure_topics(settings)
    pool = await asyncpg.create_pool(
        settings.postgres_dsn.get_secret_value(), min_size=1, max_size=5
    )
    producer = EventProducer(settings, client_id=NAME)
    status = {"consumer": False, "postgres": True}
    try:
        store = await PostgresJobStore.create(pool)
        ctx = context_from(settings, store)
        runner = ConsumerRunner(
            settings,
            group_id=settings.consumer_group,
            handlers=bind(ctx),
            producer=producer,
            idempotency=await PostgresIdempotencyStore.create(pool),
        )
        await producer.start()
        await runner.start()
        status["consumer"] = True
        log.info("consuming %s as group %s", ", ".join(runner.topics), settings.consumer_group)
        service = Service(NAME, settings)
        service.add_readiness("consumer", lambda: status["consumer"])
        service.add_readiness("postgres", lambda: status["postgres"])
        try:
            await service.run(
                runner.run(),
                watch_deadlines(ctx, producer, every_s=settings.deadline_check_seconds),
                _probe(store, status),
            )
        finally:
            await runner.stop()
    finally:
        await producer.stop()
        await pool.close()


def run() -> None:
    """Console entry point ``fedbus-orchestration``."""
    settings = load_settings(OrchestrationSettings)
    configure_logging(NAME, settings.log_level)
    asyncio.run(serve(settings))
