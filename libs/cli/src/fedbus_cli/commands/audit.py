"""``fedbus audit verify [--job ID] [--report DIR] [--reaggregate]``: replay the log and check it.

Reads every event topic from its beginning (``fedbus_cli.audit.sources``), the public keys
from ``key.published`` (checked with ``FEDBUS_ROOT_PUBLIC_KEYS``) and the artifacts from
MinIO (decrypted with ``FEDBUS_ARTIFACT_KEYS`` when encrypted at rest), runs the checks of
:func:`fedbus_cli.audit.verify`, writes ``audit.md`` and ``audit.json`` to the report
directory and prints the verdicts. Exit code 0 when no check failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from fedbus_cli.audit import AuditReport

__all__ = ["RUN", "register"]


async def _run(args: argparse.Namespace) -> AuditReport:
    from fedbus.bus.topics import catalog
    from fedbus.settings import FedbusSettings, load_settings
    from fedbus.storage import S3ArtifactStore, artifact_cipher
    from fedbus_cli.audit import sources, verify

    settings = load_settings(FedbusSettings)
    topics = catalog()
    # The records first, then the keys: a key published while the records are read (a
    # trainer that joined) is then known when its records are checked, not unknown_key.
    job = args.job.encode() if args.job else None
    records = await sources.read_records(settings, topics, key=job)
    keys = await sources.open_key_directory(settings, topics)
    try:
        store = S3ArtifactStore.from_settings(settings)
        report = await verify(records, keys=keys, catalog=topics, store=store, job_id=args.job,
                              recompute=args.reaggregate,
                              artifact_keys=artifact_cipher(settings) is not None)  # fmt: skip
    finally:
        if keys is not None:
            await keys.stop()
    return report


RUN: Callable[[argparse.Namespace], Coroutine[Any, Any, AuditReport]] = _run
"""What ``verify`` runs; tests replace it with a fake."""


def register(subparsers: Any) -> None:
    """Add the ``audit`` group to the top-level subparsers."""
    group = subparsers.add_parser("audit", help="replay the event log and verify it")
    commands = group.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)
    check = commands.add_parser(
        "verify", help="check signatures, job histories, epsilons and artifacts from the log"
    )
    check.add_argument("--job", help="audit this job only (default: every job)")
    check.add_argument("--report", type=Path, default=Path("audit-report"),
                       help="where audit.md and audit.json go (./audit-report)")  # fmt: skip
    check.add_argument("--reaggregate", action="store_true",
                       help="recompute FedAvg rounds from the stored updates")  # fmt: skip
    check.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    from fedbus_cli.audit import write_report

    report = asyncio.run(RUN(args))
    as_json, as_md = write_report(report, args.report)
    for c in report.checks:
        print(f"{c.verdict.value:>14}  {c.title} ({c.checked} checked, {len(c.findings)} failed)")
        for finding in c.findings[:20]:
            print(f"{'':>16}{finding.where}: {finding.message}")
        if len(c.findings) > 20:
            print(f"{'':>16}... {len(c.findings) - 20} more in {as_md}")
        if c.findings:
            print("\n".join(f"{'':>16}note: {note}" for note in c.notes))
    print(f"{'PASS' if report.ok else 'FAIL'}: report in {as_md} and {as_json}")
    return 0 if report.ok else 1
