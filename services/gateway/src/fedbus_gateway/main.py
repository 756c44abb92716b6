"""Wiring only: settings, adapters, handlers, then ``Service(...).run(...)``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from fedbus.bus import ConsumerRunner, EventProducer, PostgresIdempotencyStore, ensure_topics
from fedbus.service import Service
from fedbus.settings import load_settings
from fedbus.telemetry import configure_logging
from fedbus_gateway.adapters import PostgresJobStore, RegistryClient
from fedbus_gateway.api import Gateway, create_app
from fedbus_gateway.auth import KeyRing, RateLimiter
from fedbus_gateway.fanout import JobEventHub
from fedbus_gateway.handlers import CONSUMED, bind_handlers
from fedbus_gateway.settings import GatewaySettings

__all__ = ["main", "run"]

log = logging.getLogger(__name__)

PING_INTERVAL_S = 5.0


async def main(settings: GatewaySettings | None = None) -> None:
    """Start the gateway and serve until SIGTERM."""
    settings = settings or load_settings(GatewaySettings)
    configure_logging("gateway", settings.log_level)
    if not settings.gateway_api_keys:
        log.warning("no API keys configured (FEDBUS_GATEWAY_API_KEYS): every call gets 401")
    await ensure_topics(settings)
    pool = await asyncpg.create_pool(
        settings.postgres_dsn.get_secret_value(), min_size=1, max_size=8
    )
    jobs = await PostgresJobStore.create(pool)
    producer = EventProducer(settings, client_id="gateway")
    await producer.start()
    registry = RegistryClient(settings.registry_url, timeout_s=settings.registry_timeout_s)
    hub = JobEventHub()
    limiter = RateLimiter(rate=settings.gateway_rate_per_second, burst=settings.gateway_rate_burst)
    gateway = Gateway(
        jobs=jobs, publisher=producer, hub=hub, registry=registry,
        keys=KeyRing(settings.gateway_api_keys), limiter=limiter, sse_ping_s=settings.sse_ping_s,
    )  # fmt: skip
    runner = ConsumerRunner(
        settings, group_id=settings.consumer_group, handlers=bind_handlers(jobs=jobs, hub=hub),
        producer=producer, idempotency=await PostgresIdempotencyStore.create(pool),
        topics=sorted(cls.event_type() for cls in CONSUMED),
    )  # fmt: skip
    service = Service("gateway", settings, app=create_app(gateway))
    postgres_up = [True]
    service.add_readiness("postgres", lambda: postgres_up[0])
    consumer_up = [False]
    service.add_readiness("consumer", lambda: consumer_up[0])
    try:
        await runner.start()
        consumer_up[0] = True
        await service.run(runner.run(), _watch(jobs.ping, postgres_up))
    finally:
        consumer_up[0] = False
        await runner.stop()
        await producer.stop()
        await registry.close()
        await pool.close()


async def _watch(ping: Callable[[], Awaitable[bool]], flag: list[bool]) -> None:
    while True:
        flag[0] = await ping()
        await asyncio.sleep(PING_INTERVAL_S)


def run() -> None:
    """Console entry point ``fedbus-gateway``."""
    asyncio.run(main())
