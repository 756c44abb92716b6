"""Wiring only: settings, adapters, handlers, the read API, then run until SIGTERM.

``fedbus-model-registry`` or ``python -m fedbus_registry``; configured by ``FEDBUS_*``
variables (see :class:`~fedbus_registry.settings.RegistrySettings`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from fedbus.errors import RetryableError
from fedbus.events import ModelRef, utc_now
from fedbus.service import ServiceRuntime
from fedbus.settings import load_settings
from fedbus.storage import S3ArtifactStore
from fedbus.telemetry import configure_logging
from fedbus_registry.adapters import PostgresRegistryStore
from fedbus_registry.api import build_app
from fedbus_registry.deps import Deps
from fedbus_registry.handlers import HANDLERS, SOURCE, refuse_overdue
from fedbus_registry.settings import RegistrySettings

__all__ = ["main", "run"]

log = logging.getLogger(__name__)


async def main(settings: RegistrySettings) -> None:
    """Run the registry: consume job and round events, serve the read API and ops routes."""
    # Before any connection: in production, no artifact keys refuses to start here.
    artifacts = S3ArtifactStore.from_settings(settings)
    async with ServiceRuntime.open(SOURCE, settings) as rt:
        await artifacts.ensure_bucket()
        store = await PostgresRegistryStore.create(rt.pool)
        rt.watch("postgres", store.ping)
        deps = Deps(
            store=store,
            artifacts=artifacts,
            dead_letters=rt.producer,
            register_cancelled=settings.register_cancelled,
            group=settings.consumer_group,
        )

        def presign(ref: ModelRef) -> str:
            return artifacts.presigned_url(ref, expires_s=settings.download_url_ttl_s)

        app = build_app(
            store,
            presign=presign,
            checkpoints=settings.register_round_checkpoints,
            read_artifact=artifacts.get_bytes if settings.registry_serve_artifacts else None,
        )
        overdue = _refuse_overdue_every(deps, wait=timedelta(seconds=settings.ledger_wait_s))
        await rt.run(HANDLERS, deps, group_id=settings.consumer_group, app=app, tasks=[overdue])


async def _refuse_overdue_every(deps: Deps, *, wait: timedelta) -> None:
    """Refuse DP jobs whose ledger stays incomplete, checking every ``wait / 4`` (1..60 s)."""
    every_s = min(60.0, max(1.0, wait.total_seconds() / 4))
    while True:
        await asyncio.sleep(every_s)
        try:
            await refuse_overdue(deps, now=utc_now(), wait=wait)
        except RetryableError as exc:  # the database is away: try again next time
            log.warning("checking for overdue ledgers failed: %s", exc)


def run() -> None:
    """Console-script entry point."""
    settings = load_settings(RegistrySettings)
    configure_logging(SOURCE, settings.log_level)
    asyncio.run(main(settings))
