"""Wiring only: the runtime, the PostgreSQL store, the handlers and the deadline watcher."""

from __future__ import annotations

import asyncio

from fedbus.service import ServiceRuntime
from fedbus.settings import load_settings
from fedbus.telemetry import configure_logging
from fedbus_orchestration.adapters.postgres import PostgresJobStore
from fedbus_orchestration.deps import deps_from
from fedbus_orchestration.handlers import HANDLERS
from fedbus_orchestration.settings import OrchestrationSettings
from fedbus_orchestration.watcher import watch_deadlines

__all__ = ["run", "serve"]

NAME = "orchestration"


async def serve(settings: OrchestrationSettings) -> None:
    """Run orchestration until SIGTERM."""
    async with ServiceRuntime.open(NAME, settings, pool_size=5) as rt:
        store = await PostgresJobStore.create(rt.pool)
        rt.watch("postgres", store.ping, every_s=2.0)
        deps = deps_from(settings, store)
        deadlines = watch_deadlines(deps, rt.producer, every_s=settings.deadline_check_seconds)
        await rt.run(HANDLERS, deps, group_id=settings.consumer_group, tasks=[deadlines])


def run() -> None:
    """Console entry point ``fedbus-orchestration``."""
    settings = load_settings(OrchestrationSettings)
    configure_logging(NAME, settings.log_level)
    asyncio.run(serve(settings))
