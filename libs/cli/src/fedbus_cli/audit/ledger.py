"""Check 3: the privacy ledger, recomputed from what orchestration prescribed.

Each round's ``round.started`` prescribes the mechanism: the noise multiplier and clipping
norm (``privacy``), the batch size and local epochs (``training``). From those alone:

- local DP: a trainer with ``n`` records runs DP-SGD (Opacus, Poisson sampling) for
  ``steps = local_epochs * ceil(n / batch_size)`` steps at sample rate
  ``1 / ceil(n / batch_size)`` (one over the batches of an epoch, as the executor does);
  ``n`` is the trainer's own count (``update.submitted.num_samples``): nothing on the log
  can check it;
- central DP: one Gaussian release per round at sample rate 1 with the prescribed noise
  multiplier (and clipping norm, unless the strategy adapts it).

Each ``update.submitted.dp`` (local DP) and ``round.completed.dp`` (central DP) that claims
another mechanism is a finding. The ledger is then rebuilt with the prescribed mechanisms in
place of the claims, by the rules of ``fedbus privacy report`` (:func:`build_report`), and
compared with every ``budget.updated``: equal within a relative ``1e-12`` (the accountant
composes the same floats in the same order, so an honest log matches to the last bits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fedbus.events import (
    BudgetUpdated,
    DpUsage,
    Event,
    JobAccepted,
    PrivacyMode,
    RoundCompleted,
    RoundStarted,
    UpdateSubmitted,
)
from fedbus_cli.audit.report import Check
from fedbus_cli.audit.signatures import Seen
from fedbus_cli.commands.privacy import build_report

__all__ = ["check_privacy", "prescribed_local_dp"]

ADAPTIVE_OPTION = "adaptive_clipping"


def prescribed_local_dp(started: RoundStarted, *, num_samples: int) -> DpUsage:
    """The DP-SGD a trainer with ``num_samples`` records runs in ``started``'s round."""
    batches = math.ceil(max(1, num_samples) / started.training.batch_size)
    return DpUsage(
        noise_multiplier=started.privacy.noise_multiplier or 0.0, sample_rate=1 / batches,
        steps=started.training.local_epochs * batches,
        clipping_norm=started.privacy.clipping_norm or 0.0,
    )  # fmt: skip


def _prescribed_central(started: RoundStarted, claimed: DpUsage | None) -> DpUsage:
    adaptive = started.strategy.options.get(ADAPTIVE_OPTION) == 1
    clip = claimed.clipping_norm if adaptive and claimed else started.privacy.clipping_norm
    return DpUsage(noise_multiplier=started.privacy.noise_multiplier or 0.0, sample_rate=1.0,
                   steps=1, clipping_norm=clip or 0.0)  # fmt: skip


def check_privacy(jobs: dict[str, list[Seen]]) -> Check:
    """Recompute every DP job's ledger (``jobs``: each job's events, in log order)."""
    check = Check("privacy", "3. Privacy ledger from the prescribed mechanisms")
    for job_id, seen in sorted(jobs.items()):
        accepted = next((s.event for s in seen if isinstance(s.event, JobAccepted)), None)
        if accepted is None or accepted.spec.privacy.mode is PrivacyMode.NONE:
            continue
        check.checked += 1
        _check_job(check, job_id, seen, accepted)
    if check.checked == 0:
        check.reason = "no job on the log asked for differential privacy"
    else:
        check.notes.append(
            "epsilons compared within a relative 1e-12; n (records per trainer) is the "
            "trainer's own count and cannot be checked from the log"
        )
    return check


def _check_job(check: Check, job_id: str, seen: Sequence[Seen], accepted: JobAccepted) -> None:
    central = accepted.spec.privacy.mode is PrivacyMode.CENTRAL_DP
    started = [s.event for s in seen if isinstance(s.event, RoundStarted)]
    rebuilt: list[Event] = []
    where = {s.event.event_id: s.where for s in seen}
    for s in seen:
        event: Event | None = s.event
        if isinstance(event, UpdateSubmitted) and not central:
            event = _local(check, s, event, started)
        elif isinstance(event, RoundCompleted) and central:
            event = _central(check, s, event, started)
        if event is not None:
            rebuilt.append(event)
    report = build_report(job_id, rebuilt)
    rounds_done = any(isinstance(e, RoundCompleted) for e in rebuilt)
    published = [e for e in rebuilt if isinstance(e, BudgetUpdated)]
    for problem in report.problems:
        if rounds_done or published:
            check.fail(f"job {job_id}", problem)
    for row in report.rows:
        if row.status != "match":
            ids = [e.event_id for e in published if e.round == row.round]
            at = ", ".join(where.get(i, "?") for i in ids) or f"job {job_id} round {row.round}"
            check.fail(at, f"round {row.round} {row.client}: recomputed {row.recomputed}, "
                           f"budget.updated says {list(row.published)} ({row.status})")  # fmt: skip


def _round_started(
    started: Sequence[RoundStarted], round_: int, clients: Sequence[str]
) -> RoundStarted | None:
    """The latest start of ``round_`` that selected every one of ``clients``."""
    found = [s for s in started if s.round == round_ and set(clients) <= set(s.selected_clients)]
    return found[-1] if found else None


def _local(
    check: Check, s: Seen, event: UpdateSubmitted, started: Sequence[RoundStarted]
) -> UpdateSubmitted | None:
    start = _round_started(started, event.round, [event.client_id])
    if start is None:
        check.fail(s.where, f"no round.started of round {event.round} selected {event.client_id}")
        return None
    prescribed = prescribed_local_dp(start, num_samples=event.num_samples)
    if event.dp != prescribed:
        check.fail(s.where, f"{event.client_id} claims {_text(event.dp)}; round.started "
                            f"prescribed {_text(prescribed)}")  # fmt: skip
    return event.model_copy(update={"dp": prescribed})


def _central(
    check: Check, s: Seen, event: RoundCompleted, started: Sequence[RoundStarted]
) -> RoundCompleted | None:
    start = _round_started(started, event.round, event.participants)
    if start is None:
        check.fail(s.where, f"no round.started of round {event.round} selected all of "
                            f"{event.participants}")  # fmt: skip
        return None
    prescribed = _prescribed_central(start, event.dp)
    if event.dp != prescribed:
        check.fail(s.where, f"the aggregator claims {_text(event.dp)}; round.started "
                            f"prescribed {_text(prescribed)}")  # fmt: skip
    return event.model_copy(update={"dp": prescribed})


def _text(dp: DpUsage | None) -> str:
    if dp is None:
        return "no DP"
    return (f"noise {dp.noise_multiplier}, sample rate {dp.sample_rate}, {dp.steps} steps, "
            f"clipping {dp.clipping_norm}")  # fmt: skip
