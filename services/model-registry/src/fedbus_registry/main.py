"""Wiring only: settings, adapters, handlers, the read API, then run until SIGTERM.

``fedbus-model-registry`` or ``python -m fedbus_registry``; configured by ``FEDBUS_*``
variables (see :class:`~fedbus_registry.settings.RegistrySettings`).
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from fedbus.bus import ConsumerRunner, EventProducer, PostgresIdempotencyStore, ensure_topics
from fedbus.events import ModelRef
from fedbus.service import Service
from fedbus.settings import load_settings
from fedbus.storage import S3ArtifactStore
from fedbus.telemetry import configure_logging
from fedbus_registry.adapters import PostgresRegistryStore
from fedbus_registry.api import build_app
from fedbus_registry.handlers import SOURCE, bind_handlers
from fedbus_registry.settings import RegistrySettings

__all__ = ["main", "run"]

log = logging.getLogger(__name__)


async def main(settings: RegistrySettings) -> None:
    """Run the registry: consume job and round events, serve the read API and ops routes."""
    await ensure_topics(settings)
    artifacts = S3ArtifactStore.from_settings(settings)
    await artifacts.ensure_bucket()
    pool = await asyncpg.create_pool(
        settings.postgres_dsn.get_secret_value(), min_size=1, max_size=4
    )
    producer = EventProducer(settings, client_id=SOURCE)
    try:
        store = await PostgresRegistryStore.create(pool)
        runner = ConsumerRunner(
            settings,
            group_id=settings.consumer_group,
            handlers=bind_handlers(
                store=store, artifacts=artifacts, register_cancelled=settings.register_cancelled
            ),
            producer=producer,
            idempotency=await PostgresIdempotencyStore.create(pool),
        )

        def presign(ref: ModelRef) -> str:
            return artifacts.presigned_url(ref, expires_s=settings.download_url_ttl_s)

        app = build_app(store, presign=presign, checkpoints=settings.register_round_checkpoints)
        service = Service(SOURCE, settings, app=app)
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


def run() -> None:
    """Console-script entry point."""
    settings = load_settings(RegistrySettings)
    configure_logging(SOURCE, settings.log_level)
    asyncio.run(main(settings))
