"""Check 2: each job's history: do its events fit together as the platform promises.

``job.requested`` -> ``job.accepted`` or ``job.rejected`` (one decision, once) -> rounds
``1..k`` started without a gap (a round may start again after its deadline: same number)
-> rounds completed ``1..c`` without a gap, each one started first -> ``job.completed``
or ``job.failed`` (not both, and only for an accepted job) -> ``model.registered`` only for a
completed job. The events are checked for being there (a round completed was started, an
ended job was accepted), not for their order on the log. A job that is still running passes
with what it has so far.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from fedbus.events import (
    Event,
    JobAccepted,
    JobCompleted,
    JobFailed,
    JobRejected,
    JobRequested,
    ModelRegistered,
    RoundCompleted,
    RoundStarted,
)
from fedbus_cli.audit.report import Check
from fedbus_cli.audit.signatures import Seen

__all__ = ["check_histories", "events_of", "unique"]

E = TypeVar("E", bound=Event)


def unique(seen: Sequence[Seen]) -> list[Seen]:
    """``seen`` without redeliveries: the first record of each event id."""
    ids: set[str] = set()
    out = []
    for s in seen:
        if s.event.event_id not in ids:
            ids.add(s.event.event_id)
            out.append(s)
    return out


def check_histories(jobs: dict[str, list[Seen]]) -> Check:
    """Check every job's history (``jobs``: each job's events, in log order)."""
    check = Check("histories", "2. Job histories")
    for job_id, seen in sorted(jobs.items()):
        check.checked += 1
        for problem in _problems(seen):
            check.fail(f"job {job_id}", problem)
    if check.checked == 0:
        check.reason = "no job on the log"
    return check


def events_of(seen: Sequence[Seen], kind: type[E]) -> list[E]:
    """The events of type ``kind`` in ``seen``, in order."""
    return [s.event for s in seen if isinstance(s.event, kind)]


def _problems(seen: Sequence[Seen]) -> list[str]:
    problems = []
    accepted, rejected = events_of(seen, JobAccepted), events_of(seen, JobRejected)
    if not events_of(seen, JobRequested):
        problems.append("no job.requested")
    if accepted and rejected:
        problems.append("both job.accepted and job.rejected")
    elif len(accepted) > 1 or len(rejected) > 1:
        problems.append(f"{len(accepted) + len(rejected)} decisions (job.accepted, job.rejected); "
                        "one expected")  # fmt: skip
    started = sorted({e.round for e in events_of(seen, RoundStarted)})
    done = sorted({e.round for e in events_of(seen, RoundCompleted)})
    if (started or done) and not accepted:
        problems.append("rounds ran without job.accepted")
    if started != list(range(1, len(started) + 1)):
        problems.append(f"rounds started {started}: not 1..{len(started)} without a gap")
    if done != list(range(1, len(done) + 1)):
        problems.append(f"rounds completed {done}: not 1..{len(done)} without a gap")
    if unstarted := sorted(set(done) - set(started)):
        problems.append(f"rounds {unstarted} completed but never started")
    if early := [r for r in started if r > 1 and r - 1 not in done]:
        problems.append(f"rounds {early} started before the round before them completed")
    if any(isinstance(s.event, JobCompleted | JobFailed) for s in seen) and not accepted:
        problems.append("the job ended (job.completed or job.failed) without job.accepted")
    problems += _ending(seen, done)
    return problems


def _ending(seen: Sequence[Seen], done: Sequence[int]) -> list[str]:
    completed = events_of(seen, JobCompleted)
    failed, registered = events_of(seen, JobFailed), events_of(seen, ModelRegistered)
    problems = []
    if completed and failed:
        problems.append("both job.completed and job.failed")
    if len({(e.status, e.rounds_completed) for e in completed}) > 1:
        problems.append("two job.completed that disagree")
    for e in completed:
        if e.rounds_completed > len(done):
            problems.append(
                f"job.completed says {e.rounds_completed} rounds; {len(done)} completed"
            )
    if registered and not completed:
        problems.append("model.registered without job.completed")
    return problems
