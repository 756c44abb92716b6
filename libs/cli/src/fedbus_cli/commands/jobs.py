"""``fedbus jobs submit|list|show|watch|cancel``: federated jobs through the gateway."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from fedbus_cli.commands._gateway import (
    GatewayClient,
    GatewayError,
    StreamLostError,
    add_connection_flags,
    run_with_client,
)

__all__ = ["register"]

STATUSES = (
    "requested", "accepted", "rejected", "running", "completed", "failed", "cancelled",
    "budget_exhausted",
)  # fmt: skip
RECONNECTS = 5


def register(subparsers: Any) -> None:
    """Add the ``jobs`` group to the top-level subparsers."""
    group = subparsers.add_parser("jobs", help="submit and follow jobs through the gateway")
    commands = group.add_subparsers(dest="jobs_command", metavar="SUBCOMMAND", required=True)
    submit = commands.add_parser("submit", help="submit a job spec (YAML); prints the job id")
    submit.add_argument("spec", type=Path, help="YAML file with the JobSpec fields")
    submit.add_argument("--idempotency-key", default=None, help="resubmitting returns the job")
    submit.add_argument("--watch", action="store_true", help="then follow it like `watch`")
    submit.set_defaults(handler=_submit)
    listing = commands.add_parser("list", help="your tenant's jobs, newest first")
    listing.add_argument("--status", choices=STATUSES, default=None)
    listing.add_argument("--json", action="store_true", help="print the raw JSON")
    listing.set_defaults(handler=_list)
    show = commands.add_parser("show", help="one job's status, rounds, metrics")
    show.add_argument("job_id")
    show.set_defaults(handler=_show)
    watch = commands.add_parser("watch", help="follow a job live; exit 0 if it completes")
    watch.add_argument("job_id")
    watch.set_defaults(handler=_watch)
    cancel = commands.add_parser("cancel", help="ask to stop a job")
    cancel.add_argument("job_id")
    cancel.add_argument("--reason", default=None)
    cancel.set_defaults(handler=_cancel)
    for parser in (submit, listing, show, watch, cancel):
        add_connection_flags(parser)


def load_spec(path: Path) -> tuple[dict[str, Any], str | None]:
    """The job spec (checked as the gateway checks it) and ``idempotency_key`` of a YAML file."""
    import yaml

    from fedbus.jobspec import check_spec

    try:
        raw: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise GatewayError(f"{path}: cannot read the spec: {exc}") from exc
    if not isinstance(raw, dict):
        raise GatewayError(f"{path}: a job spec is a YAML mapping of JobSpec fields")
    body = dict(raw)
    key = body.pop("idempotency_key", None)
    body.pop("name", None)
    # Sent as written: a lenient parse here would drop a misspelt field the gateway refuses.
    problems = check_spec(body)
    if problems:
        listed = "; ".join(f"{p.field}: {p.message}" for p in problems)
        raise GatewayError(f"{path}: invalid job spec: {listed}")
    return body, key


def _submit(args: argparse.Namespace) -> int:
    def act(client: GatewayClient, args: argparse.Namespace) -> int:
        spec, key = load_spec(args.spec)
        body = {"spec": spec, "idempotency_key": args.idempotency_key or key}
        reply = client.request("POST", "/v1/jobs", json=body)
        print(reply["job_id"])
        return follow(client, reply["job_id"]) if args.watch else 0

    return run_with_client(args, act)


def _list(args: argparse.Namespace) -> int:
    def act(client: GatewayClient, args: argparse.Namespace) -> int:
        params = {"status": args.status} if args.status else {}
        jobs = client.request("GET", "/v1/jobs", params=params)["jobs"]
        if args.json:
            print(json.dumps(jobs, indent=2))
            return 0
        print(f"{'JOB ID':<36}  {'STATUS':<16}  {'ROUNDS':>7}  {'MODEL/DATASET':<24}  CREATED")
        for job in jobs:
            spec = job.get("spec") or {}
            rounds = f"{job['rounds_completed']}/{spec.get('rounds', '?')}"
            what = f"{spec.get('model', '?')}/{spec.get('dataset', '?')}"
            print(f"{job['job_id']:<36}  {job['status']:<16}  {rounds:>7}  {what:<24}  "
                  f"{job['created_at']}")  # fmt: skip
        return 0

    return run_with_client(args, act)


def _show(args: argparse.Namespace) -> int:
    def act(client: GatewayClient, args: argparse.Namespace) -> int:
        print(json.dumps(client.request("GET", f"/v1/jobs/{args.job_id}"), indent=2))
        return 0

    return run_with_client(args, act)


def _cancel(args: argparse.Namespace) -> int:
    def act(client: GatewayClient, args: argparse.Namespace) -> int:
        body = {"reason": args.reason} if args.reason else None
        client.request("POST", f"/v1/jobs/{args.job_id}/cancel", json=body)
        print(f"cancellation of job {args.job_id} requested")
        return 0

    return run_with_client(args, act)


def _watch(args: argparse.Namespace) -> int:
    return run_with_client(args, lambda client, args: follow(client, args.job_id))


def follow(client: GatewayClient, job_id: str) -> int:
    """Follow ``job_id``'s stream with progress bars; 0 when it completes, 1 otherwise.

    A stream that breaks off (or that the gateway ends early: a restart, a dropped slow
    reader) is reopened with ``Last-Event-ID``, so the gateway sends what was missed; no event
    is shown twice. Up to ``RECONNECTS`` reopenings in a row that bring nothing new, with
    backoff; then the last error is raised.
    """
    from fedbus_cli.commands.jobwatch import JobWatch

    with JobWatch(job_id) as watch:
        seen = _Seen()
        failures = 0
        while True:
            lost: StreamLostError | None = None
            try:
                for frame in client.events(job_id, last_event_id=seen.last_id):
                    if seen.is_new(frame.event, frame.id):
                        watch.apply(frame.event, json.loads(frame.data))
                        failures = 0
            except StreamLostError as exc:
                lost = exc
            if watch.ended:
                break
            failures += 1
            if failures > RECONNECTS:
                raise lost or GatewayError(f"the event stream of job {job_id} kept ending early")
            _sleep(min(0.5 * 2.0**failures, 10.0))
    print(watch.summary())
    return 0 if watch.status == "completed" else 1


_sleep = time.sleep
"""How :func:`follow` waits before reconnecting (tests replace it)."""


class _Seen:
    """The last event id shown; tells new frames from ones already shown."""

    def __init__(self) -> None:
        self.last: int | None = None

    @property
    def last_id(self) -> str | None:
        return str(self.last) if self.last is not None else None

    def is_new(self, event: str, frame_id: str) -> bool:
        if event == "status":  # only before any event: after that the replay is newer
            return self.last is None
        try:
            seq = int(frame_id)
        except ValueError:  # a gateway without sequence ids: nothing to compare
            return True
        if self.last is not None and seq <= self.last:
            return False
        self.last = seq
        return True
