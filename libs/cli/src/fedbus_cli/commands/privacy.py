"""``fedbus privacy report --job J``: recompute a job's epsilon from the event log alone.

Reads ``job.accepted``, ``update.submitted``, ``round.completed`` and ``budget.updated`` from
the beginning of each topic up to its current end (a consumer without a group: nothing is
committed), rebuilds the ledger with :mod:`fedbus.privacy` and compares it, per round and
per client, with what the privacy-accountant published. Exit code 0 when everything
matches, 1 on a mismatch, a round that should have been published and was not, or when no
``budget.updated`` was published at all.

The counting rules are the accountant's (``docs/privacy.md``), written again here on
purpose: an audit that imported the accountant's code would repeat its mistakes.

- round r counts once rounds ``1..r`` are completed and, for local DP, every participant of
  each has its ``update.submitted`` (central DP: each round carried its ``dp`` release);
- local DP charges a client the entries of rounds ``<= r`` in which it took part; the job's
  epsilon is the largest client's;
- central DP charges each release to the round's participants; the job's epsilon composes
  every release of rounds ``<= r``;
- entries compose in (round, event id) order; an event id counts once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fedbus.events import (
    BudgetUpdated,
    Event,
    EventDecodeError,
    JobAccepted,
    PrivacyMode,
    RoundCompleted,
    UpdateSubmitted,
)
from fedbus.privacy import (
    GaussianSteps,
    LedgerEntry,
    Mechanism,
    PrivacyLedger,
    compute_epsilon_composed,
)
from fedbus.settings import FedbusSettings, load_settings

__all__ = ["TOPICS", "EventSource", "Report", "Row", "build_report", "read_job_events", "register"]

TOPICS = ("job.accepted", "update.submitted", "round.completed", "budget.updated")
TOTAL = "(total)"
_TOLERANCE = 1e-12

EventSource = Callable[[str], "list[Event] | tuple[list[Event], list[str]]"]
"""A job's events, or its events and the records refused for their signatures."""
"""Returns every event of the job (id given) found on :data:`TOPICS`, in log order."""


@dataclass(frozen=True)
class Row:
    """One comparison: a round's total or one client's epsilon."""

    round: int
    client: str
    recomputed: float | None
    published: tuple[float, ...]
    status: str


@dataclass
class Report:
    """The comparison of a job's recomputed and published epsilons."""

    job_id: str
    mode: str | None = None
    target_epsilon: float | None = None
    delta: float | None = None
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when something was published and every row matches."""
        published = any(row.published for row in self.rows)
        return published and not self.problems and all(r.status == "match" for r in self.rows)


@dataclass(frozen=True)
class _Entry:
    event_id: str
    round: int
    clients: tuple[str, ...]
    steps: GaussianSteps


@dataclass
class _Log:
    accepted: JobAccepted | None = None
    rounds: dict[int, tuple[str, ...]] = field(default_factory=dict)
    local: dict[str, _Entry] = field(default_factory=dict)
    central: dict[str, _Entry] = field(default_factory=dict)
    published: dict[int, dict[str, BudgetUpdated]] = field(default_factory=dict)

    def add(self, event: Event) -> None:
        if isinstance(event, JobAccepted):
            self.accepted = self.accepted or event
        elif isinstance(event, UpdateSubmitted) and event.dp and event.dp.noise_multiplier > 0:
            dp = event.dp
            steps = GaussianSteps(dp.noise_multiplier, dp.sample_rate, dp.steps)
            entry = _Entry(event.event_id, event.round, (event.client_id,), steps)
            self.local.setdefault(event.event_id, entry)
        elif isinstance(event, RoundCompleted):
            self.rounds.setdefault(event.round, tuple(event.participants))
            if event.dp and event.dp.noise_multiplier > 0:
                dp = event.dp
                steps = GaussianSteps(dp.noise_multiplier, dp.sample_rate, dp.steps)
                entry = _Entry(event.event_id, event.round, tuple(event.participants), steps)
                self.central.setdefault(event.event_id, entry)
        elif isinstance(event, BudgetUpdated) and event.round is not None:
            self.published.setdefault(event.round, {}).setdefault(event.event_id, event)


def build_report(job_id: str, events: Sequence[Event]) -> Report:
    """Recompute ``job_id``'s budget per round from ``events`` and compare with the published."""
    log = _Log()
    for event in events:
        if event.job_id == job_id:
            log.add(event)
    report = Report(job_id)
    if log.accepted is None:
        report.problems.append("no job.accepted for this job on the log")
    else:
        privacy = log.accepted.spec.privacy
        report.mode, report.target_epsilon, report.delta = (
            privacy.mode.value, privacy.target_epsilon, privacy.delta,
        )  # fmt: skip
    if not log.published:
        report.problems.append("no budget.updated was published for this job")
    for round_ in sorted(set(log.published) | set(log.rounds)):
        recomputed = _recompute(log, round_)
        published = list(log.published.get(round_, {}).values())
        if recomputed is None and not published:
            continue  # not ready yet, and rightly not published
        report.rows += _compare(round_, recomputed, published)
    return report


def _recompute(log: _Log, round_: int) -> dict[str, float] | None:
    """Per client and ``TOTAL``: epsilon after ``round_``; None while it is not ready."""
    accepted = log.accepted
    if accepted is None:
        return None
    privacy = accepted.spec.privacy
    if privacy.mode is PrivacyMode.NONE or privacy.delta is None:
        return None
    if any(k not in log.rounds for k in range(1, round_ + 1)):
        return None
    central = privacy.mode is PrivacyMode.CENTRAL_DP
    if central:
        entries = [e for e in log.central.values() if e.round <= round_]
        ready = {e.round for e in entries} >= set(range(1, round_ + 1))
    else:
        entries = [e for e in log.local.values()
                   if e.round <= round_ and e.clients[0] in log.rounds[e.round]]  # fmt: skip
        have = {(e.round, e.clients[0]) for e in entries}
        ready = all((k, c) in have for k in range(1, round_ + 1) for c in log.rounds[k])
    if not ready:
        return None
    entries.sort(key=lambda e: (e.round, e.event_id))
    rows = _ledger_entries(accepted, entries, central=central)
    ledger = PrivacyLedger(delta=privacy.delta, entries=rows)
    clients = {c: ledger.epsilon_for_job_client(accepted.job_id, c)
               for c in sorted({c for e in entries for c in e.clients})}  # fmt: skip
    if central:
        history = [e.steps for e in entries]
        total = compute_epsilon_composed(history=history, delta=privacy.delta) if history else 0.0
    else:
        total = max(clients.values(), default=0.0)
    return {TOTAL: total, **clients}


def _ledger_entries(
    accepted: JobAccepted, entries: Sequence[_Entry], *, central: bool
) -> list[LedgerEntry]:
    job, dataset = accepted.job_id, accepted.spec.dataset
    mechanism: Mechanism = "central-dp" if central else "local-dp"
    return [
        LedgerEntry(f"{e.event_id}:{c}" if central else e.event_id, job, c, dataset, e.round,
                    e.steps.noise_multiplier, e.steps.sample_rate, e.steps.steps, mechanism)
        for e in entries
        for c in e.clients
    ]  # fmt: skip


def _compare(
    round_: int, recomputed: dict[str, float] | None, published: Sequence[BudgetUpdated]
) -> list[Row]:
    said = [{TOTAL: p.total.epsilon_spent, **{c: s.epsilon_spent for c, s in p.clients.items()}}
            for p in published]  # fmt: skip
    names = set(recomputed or {}).union(*said) if said else set(recomputed or {})
    rows = []
    for name in sorted(names, key=lambda n: (n != TOTAL, n)):
        mine = (recomputed or {}).get(name)
        theirs = tuple(s[name] for s in said if name in s)
        if not published:
            status = "MISSING"
        elif (
            mine is not None
            and len(theirs) == len(said)
            and all(math.isclose(mine, t, rel_tol=_TOLERANCE, abs_tol=_TOLERANCE) for t in theirs)
        ):
            status = "match"
        else:
            status = "MISMATCH"
        rows.append(Row(round_, name, mine, theirs, status))
    return rows


def read_job_events(
    job_id: str, settings: FedbusSettings | None = None
) -> tuple[list[Event], list[str]]:
    """Every event of ``job_id`` on :data:`TOPICS`, from the beginning up to the current end,
    and the records left out because a service would refuse them.

    Each record is admitted as the services admit it
    (:func:`fedbus_cli.audit.signatures.admit_record`): with root keys configured
    (``FEDBUS_ROOT_PUBLIC_KEYS``) a signed record must verify, its signer's role must produce
    the topic, its bound fields must name the signer's party and its Kafka key must be its
    event's; every record's event must belong on its topic; an unsigned record is refused
    when signatures are required (``FEDBUS_REQUIRE_SIGNATURES``). So a trainer that writes
    ``update.submitted`` under another client's id, or an aggregator that puts a
    ``budget.updated`` on ``round.completed``, cannot skew the recomputation.
    """
    return asyncio.run(_read(job_id, settings or load_settings(FedbusSettings)))


async def _read(job_id: str, settings: FedbusSettings) -> tuple[list[Event], list[str]]:
    from fedbus.bus.signing import EventSignatureError
    from fedbus.bus.topics import catalog
    from fedbus_cli.audit import sources
    from fedbus_cli.audit.signatures import admit_record

    topics = catalog()
    # The records first, then the keys: a key published while the records are read is then
    # known when its records are checked.
    records = await sources.read_records(settings, TOPICS, key=job_id.encode())
    keys = await sources.open_key_directory(settings, topics)
    events: list[Event] = []
    refused: list[str] = []
    try:
        for record in records:
            try:
                events.append(
                    admit_record(
                        record, keys, topics, unsigned_allowed=not settings.signatures_required
                    )
                )
            except EventSignatureError as exc:
                refused.append(f"{record.where}: {exc}")
            except (EventDecodeError, ValueError) as exc:
                refused.append(f"{record.where}: not an event of this topic: {exc}")
        return events, refused
    finally:
        if keys is not None:
            await keys.stop()


SOURCE: EventSource = read_job_events
"""Where ``report`` reads events from; tests replace it with a fake."""


def register(subparsers: Any) -> None:
    """Add the ``privacy`` group to the top-level subparsers."""
    group = subparsers.add_parser("privacy", help="privacy budgets, recomputed from the log")
    commands = group.add_subparsers(dest="privacy_command", metavar="SUBCOMMAND", required=True)
    report = commands.add_parser(
        "report", help="recompute a job's epsilon from Kafka and compare with the accountant's"
    )
    report.add_argument("--job", required=True, help="the job id")
    report.add_argument("--json", action="store_true", help="print JSON instead of a table")
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    got = SOURCE(args.job)
    events, refused = got if isinstance(got, tuple) else (got, [])
    report = build_report(args.job, events)
    report.problems += [f"left out, not signed by a key allowed to say it: {r}" for r in refused]
    print(json.dumps(_as_json(report), indent=2) if args.json else _as_table(report))
    for problem in report.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 0 if report.ok else 1


def _as_json(report: Report) -> dict[str, Any]:
    rows = [
        {"round": r.round, "client": r.client, "recomputed": r.recomputed,
         "published": list(r.published), "status": r.status}
        for r in report.rows
    ]  # fmt: skip
    budget = {"epsilon": report.target_epsilon, "delta": report.delta}
    return {"job_id": report.job_id, "mode": report.mode, "budget": budget, "rows": rows,
            "problems": report.problems, "ok": report.ok}  # fmt: skip


def _as_table(report: Report) -> str:
    title = (
        f"job {report.job_id} ({report.mode or '?'}; "
        f"budget epsilon {report.target_epsilon} at delta {report.delta})"
    )
    header = f"{'ROUND':>5}  {'CLIENT':<20}  {'RECOMPUTED':>18}  {'PUBLISHED':>18}  STATUS"
    lines = [title, header]
    for row in report.rows:
        mine = "-" if row.recomputed is None else f"{row.recomputed:.12g}"
        theirs = f"{row.published[0]:.12g}" if row.published else "-"
        if len(row.published) > 1:
            theirs += f" (x{len(row.published)})"
        lines.append(f"{row.round:>5}  {row.client:<20}  {mine:>18}  {theirs:>18}  {row.status}")
    lines.append("all match" if report.ok else "NOT OK")
    return "\n".join(lines)
