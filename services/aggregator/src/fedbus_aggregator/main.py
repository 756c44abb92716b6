"""Wiring only: settings, adapters, handlers, the deadline task, and the service loop.

Run ``fedbus-aggregator --eval-data NAME=PATH`` (or ``python -m fedbus_aggregator``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from fedbus.bus import AddressedTopics, Publisher
from fedbus.errors import FedbusError
from fedbus.service import ServiceRuntime
from fedbus.settings import load_settings
from fedbus.storage import S3ArtifactStore
from fedbus.telemetry import configure_logging
from fedbus_aggregator.adapters.executor import ExecutorModels
from fedbus_aggregator.adapters.postgres import PostgresRoundStore
from fedbus_aggregator.caches import UpdateCache
from fedbus_aggregator.deps import Deps
from fedbus_aggregator.handlers import HANDLERS, close_due_rounds
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


async def serve(settings: AggregatorSettings, eval_data: dict[str, Path]) -> None:
    """Build the adapters and run the consumer and the deadline task until stopped."""
    models = ExecutorModels(eval_data, device=settings.eval_device)
    log.info("evaluating on datasets %s", models.datasets)
    # Before any connection: in production, no artifact keys refuses to start here.
    artifacts = S3ArtifactStore.from_settings(settings)
    # Signs trainers' URLs for the host they reach MinIO at (SigV4 signs the host); no request.
    presigner = S3ArtifactStore.from_settings(settings, endpoint=settings.minio_public_endpoint)
    async with ServiceRuntime.open("aggregator", settings) as rt:
        store = await PostgresRoundStore.create(rt.pool)
        rt.watch("postgres", store.ping)
        await artifacts.ensure_bucket()
        rt.watch("minio", lambda: _bucket_reachable(artifacts))
        deps = Deps(
            store,
            artifacts,
            models,
            max_update_norm=settings.max_update_norm,
            updates=UpdateCache(settings.update_cache_mb * 2**20),
            presigner=presigner,
            assigned_topics=AddressedTopics(settings, "round.assigned"),
            grant_grace_s=settings.grant_grace_s,
        )
        deadlines = _deadlines(deps, rt.producer, settings.deadline_poll_seconds)
        await rt.run(HANDLERS, deps, group_id=settings.consumer_group, tasks=[deadlines])


async def _deadlines(deps: Deps, publisher: Publisher, every_s: float) -> None:
    """Close rounds past their deadline (and publish what was not), every ``every_s``."""
    while True:
        await close_due_rounds(deps=deps, publisher=publisher)
        await asyncio.sleep(every_s)


async def _bucket_reachable(artifacts: S3ArtifactStore) -> bool:
    """MinIO's readiness probe: the bucket exists (or can be made) right now."""
    try:
        await artifacts.ensure_bucket()
    except FedbusError:
        return False
    return True
