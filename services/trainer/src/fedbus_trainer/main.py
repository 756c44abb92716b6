"""Wiring only: command line, settings, adapters, handlers, heartbeats, run.

``python -m fedbus_trainer --client-id hospital-a \\
--data mnist=/data/mnist/clients/client-000.parquet``
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import sys
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

from pydantic import ValidationError

from fedbus.bus import AddressedTopics, InMemoryIdempotencyStore
from fedbus.events import assigned_topic
from fedbus.service import ServiceRuntime
from fedbus.settings import Environment, load_settings
from fedbus.storage import artifact_cipher
from fedbus.telemetry import configure_logging
from fedbus_executor import DatasetError, DeviceError, select_device, warm_up
from fedbus_trainer.adapters.presigned import PresignedArtifacts
from fedbus_trainer.capabilities import announced_datasets, announced_models
from fedbus_trainer.compute import compute_executor
from fedbus_trainer.datasets import (
    DataArgumentError,
    LocalDataset,
    load_local_datasets,
    parse_data_args,
)
from fedbus_trainer.deps import Deps
from fedbus_trainer.handlers import HANDLERS
from fedbus_trainer.heartbeat import heartbeat_loop
from fedbus_trainer.memory import release_free_memory
from fedbus_trainer.settings import TrainerSettings
from fedbus_trainer.site import SiteGate
from fedbus_trainer.state import SubmittedLog

__all__ = ["build_parser", "run", "serve", "startup"]

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The ``fedbus-trainer`` command line (each option falls back to its env variable)."""
    parser = argparse.ArgumentParser(
        prog="fedbus-trainer", description="Train fedbus rounds next to local data."
    )
    parser.add_argument("--client-id", help="this trainer's client id (FEDBUS_CLIENT_ID)")
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a dataset: announced name and client Parquet file, or the dataset folder "
        "holding clients/<client id>.parquet (repeatable; FEDBUS_DATA)",
    )
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (FEDBUS_DEVICE)")
    return parser


def startup(
    argv: Sequence[str] | None = None,
) -> tuple[TrainerSettings, dict[str, LocalDataset], str]:
    """Parse arguments, load settings, validate every dataset and resolve the device.

    Exits with status 2 and a one-line message (naming the file) when anything is invalid.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {
        k: v for k, v in {"client_id": args.client_id, "device": args.device}.items() if v
    }
    try:
        settings = load_settings(TrainerSettings, **overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        parser.exit(2, f"fedbus-trainer: error: {problems}\n")
    if not settings.client_id:
        parser.exit(2, "fedbus-trainer: error: --client-id (or FEDBUS_CLIENT_ID) is required\n")
    try:
        paths = parse_data_args([settings.data, *args.data])
        if not paths:
            raise DataArgumentError("no dataset: give --data NAME=PATH (or FEDBUS_DATA)")
        datasets = load_local_datasets(paths, settings.client_id)
        device = _device_name(settings.device)
    except (DataArgumentError, DatasetError, DeviceError) as exc:
        parser.exit(2, f"fedbus-trainer: error: {exc}\n")
    try:  # a bad site policy (or its unreadable history) stops the trainer before it connects
        SiteGate.load(settings.site_policy_file, settings.client_state_dir())
    except ValueError as exc:
        parser.exit(2, f"fedbus-trainer: error: {exc}\n")
    held = [*settings.operator_secrets(), *filter(None, [settings.foreign_kafka_user()])]
    if held:  # production refuses them (insecure_values); here they are only unused
        print(
            f"fedbus-trainer: warning: {', '.join(held)} set; a trainer uses none of them "
            "(give it its own env file: stack.py principal trainer <id> writes one)",
            file=sys.stderr,
        )
    release_free_memory()  # the validation above read every file and let it go
    return settings, datasets, device


def _device_name(requested: str) -> str:
    device = select_device(requested).device
    if device.type == "cuda":
        return f"cuda:{device.index or 0}"
    return str(device)


async def serve(settings: TrainerSettings, datasets: dict[str, LocalDataset], device: str) -> None:
    """Run the trainer until SIGTERM: consume its ``round.assigned.<client_id>``, train, beat."""
    client = f"trainer-{settings.client_id}"
    # No PostgreSQL and no MinIO credentials: a trainer keeps what it submitted in its state
    # directory, and reads and writes artifacts only through the URLs each round grants.
    # Before any connection: in production, no artifact keys refuses to start here.
    artifacts = PresignedArtifacts(
        artifact_cipher(settings),
        ssl_context=settings.minio_ssl_context(),
        require_https=settings.env is Environment.PRODUCTION,
    )
    topic = assigned_topic(settings.client_id)
    async with ServiceRuntime.open("trainer", settings, client_id=client, pool_size=None) as rt:
        rt.on_close(artifacts.aclose)
        await AddressedTopics(settings, "round.assigned").ensure([settings.client_id])
        compute = compute_executor(settings.compute_nice)
        rt.on_close(functools.partial(_shut_down, compute))
        deps = Deps(
            client_id=settings.client_id,
            datasets=datasets,
            artifacts=artifacts,
            publisher=rt.producer,
            submitted=SubmittedLog(settings.client_state_dir() / "submitted.json"),
            device=device,
            progress_interval_s=settings.progress_interval_s,
            compute=compute,
            site=SiteGate.load(settings.site_policy_file, settings.client_state_dir()),
        )
        log.info("site policy %s", deps.site.policy.model_dump(exclude_defaults=True) or "none")
        rt.add_readiness("datasets", lambda: bool(datasets))
        log.info(
            "trainer %s on %s, group %s, datasets %s",
            settings.client_id,
            device,
            settings.group_id(),
            {name: d.num_samples for name, d in datasets.items()},
        )
        models = announced_models()
        log.info("models %s", [f"{m.name} ({m.package} {m.version})" for m in models])
        beats = heartbeat_loop(
            rt.producer,
            client_id=settings.client_id,
            device=device,
            datasets=announced_datasets(datasets.values(), models),
            models=models,
            activity=deps.activity,
            interval_seconds=settings.heartbeat_seconds,
        )
        group = settings.group_id()
        idempotency = InMemoryIdempotencyStore()  # no PostgreSQL: `submitted` answers redeliveries
        await rt.run(HANDLERS, deps, group_id=group, tasks=[beats], idempotency=idempotency,
                     topics=[topic])  # fmt: skip


async def _shut_down(compute: Executor) -> None:
    """Let the compute thread go without waiting: a round still training is abandoned."""
    compute.shutdown(wait=False)


def run(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``fedbus-trainer`` and ``python -m fedbus_trainer``."""
    settings, datasets, device = startup(argv)
    configure_logging("trainer", settings.log_level)
    warm_up()  # before the first heartbeat: no round waits for torch's first-step imports
    asyncio.run(serve(settings, datasets, device))
