"""The accountant's pure logic: which spendings a round's budget counts, and its figures.

No I/O. The handlers feed it what the store remembers; ``fedbus privacy report`` applies the
same rules to the event log, so the numbers can be recomputed from the topics alone.

The rules, chosen so that the figures of round ``r`` depend only on facts in the log and not
on the order in which the three topics happen to be read:

- round ``r`` is *ready* when the ``round.completed`` of every round ``1..r`` is known and,
  for local DP, every participant of each of those rounds has an ``update.submitted`` entry
  for it (central DP: each of those rounds carried its ``dp`` release);
- local DP counts the entries of rounds ``<= r`` whose client took part in that round (an
  update the aggregator dropped is not in any released model; it stays in the ledger and
  counts towards the client's lifetime cap);
- central DP counts every release of rounds ``<= r``; each is charged to the round's
  participants, and the job total composes all of them (user-level, no amplification by
  client sampling);
- entries are composed in ``(round, event_id)`` order, so a replay sums the same floats in
  the same order and gets bit-identical epsilons.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from fedbus.events import PrivacyMode
from fedbus.privacy import (
    GaussianSteps,
    InvalidPrivacyParameterError,
    LedgerEntry,
    Mechanism,
    PlannedSpend,
    PrivacyLedger,
    compute_epsilon_composed,
)

__all__ = [
    "BudgetFigures",
    "ClientLifetime",
    "JobBudget",
    "Spending",
    "counted_spendings",
    "figures_after_round",
    "is_ready",
    "ledger_entries",
    "lifetime_of",
]


@dataclass(frozen=True, slots=True)
class JobBudget:
    """A DP job's budget, from its ``job.accepted``."""

    job_id: str
    mode: PrivacyMode
    target_epsilon: float
    delta: float
    dataset: str


@dataclass(frozen=True, slots=True)
class Spending:
    """One ledger row, keyed by the id of the event that caused it.

    ``clients`` is the one trainer of a local-DP ``update.submitted``, or the participants a
    central-DP ``round.completed`` release is charged to.
    """

    event_id: str
    job_id: str
    round: int
    clients: tuple[str, ...]
    mechanism: Mechanism
    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        # Refuse a bad mechanism when it is recorded, not every time the job is accounted.
        self.steps_run()
        if not self.clients:
            raise InvalidPrivacyParameterError(f"spending {self.event_id} charges no client")

    @property
    def sort_key(self) -> tuple[int, str]:
        """The composition order: by round, then event id."""
        return (self.round, self.event_id)

    def steps_run(self) -> GaussianSteps:
        """The mechanism this spending ran."""
        return GaussianSteps(self.noise_multiplier, self.sample_rate, self.steps)


@dataclass(frozen=True, slots=True)
class BudgetFigures:
    """What ``budget.updated`` of one round says."""

    round: int
    total: float
    clients: dict[str, float] = field(default_factory=dict)
    exhausted: bool = False


def ledger_entries(spendings: Iterable[Spending], *, dataset: str) -> list[LedgerEntry]:
    """The :class:`~fedbus.privacy.LedgerEntry` of each spending, one per charged client.

    A central release charged to several participants gets one entry per participant, keyed
    ``<event_id>:<client>`` so that the ledger keeps them apart.
    """
    entries = []
    for s in sorted(spendings, key=lambda s: s.sort_key):
        for client in s.clients:
            key = s.event_id if s.mechanism == "local-dp" else f"{s.event_id}:{client}"
            entries.append(
                LedgerEntry(key, s.job_id, client, dataset, s.round, s.noise_multiplier,
                            s.sample_rate, s.steps, s.mechanism)
            )  # fmt: skip
    return entries


def is_ready(
    job: JobBudget, round_: int, rounds: Mapping[int, Sequence[str]], spendings: Iterable[Spending]
) -> bool:
    """Whether every fact round ``round_``'s budget depends on is known."""
    if any(k not in rounds for k in range(1, round_ + 1)):
        return False
    if job.mode is PrivacyMode.CENTRAL_DP:
        released = {s.round for s in spendings if s.mechanism == "central-dp"}
        return all(k in released for k in range(1, round_ + 1))
    submitted = {(s.round, s.clients[0]) for s in spendings if s.mechanism == "local-dp"}
    return all((k, c) in submitted for k in range(1, round_ + 1) for c in rounds[k])


def counted_spendings(
    job: JobBudget, round_: int, rounds: Mapping[int, Sequence[str]], spendings: Iterable[Spending]
) -> list[Spending]:
    """The spendings round ``round_``'s budget counts, in composition order."""
    if job.mode is PrivacyMode.CENTRAL_DP:
        chosen = [s for s in spendings if s.mechanism == "central-dp" and s.round <= round_]
    else:
        chosen = [
            s
            for s in spendings
            if s.mechanism == "local-dp"
            and s.round <= round_
            and s.clients[0] in rounds.get(s.round, ())
        ]
    return sorted(chosen, key=lambda s: s.sort_key)


def figures_after_round(
    job: JobBudget,
    round_: int,
    rounds: Mapping[int, Sequence[str]],
    spendings: Sequence[Spending],
) -> BudgetFigures | None:
    """The budget after round ``round_``, or None while a fact it needs is missing.

    Parameters
    ----------
    job
        The job's budget.
    round_
        The round just completed.
    rounds
        Participants of each completed round.
    spendings
        The job's ledger rows.

    ``exhausted`` is about the job's own budget. A client's lifetime cap across jobs is
    orchestration's to enforce (it stops selecting that client, from
    ``client.budget.updated``), so one client near its cap does not end a job others can
    continue.
    """
    if not is_ready(job, round_, rounds, spendings):
        return None
    counted = counted_spendings(job, round_, rounds, spendings)
    ledger = PrivacyLedger(delta=job.delta, entries=ledger_entries(counted, dataset=job.dataset))
    clients = {
        c: ledger.epsilon_for_job_client(job.job_id, c)
        for c in sorted({c for s in counted for c in s.clients})
    }
    if job.mode is PrivacyMode.CENTRAL_DP:
        total = _composed([s.steps_run() for s in counted], job.delta)
        over_job = _composed([*(s.steps_run() for s in counted), counted[-1].steps_run()],
                             job.delta) > job.target_epsilon  # fmt: skip
    else:
        total = max(clients.values(), default=0.0)
        over_job = any(
            ledger.projected_epsilon(_next_round(job, c, counted)).job > job.target_epsilon
            for c in clients
        )
    return BudgetFigures(round=round_, total=total, clients=clients, exhausted=over_job)


def _composed(history: Sequence[GaussianSteps], delta: float) -> float:
    return compute_epsilon_composed(history=history, delta=delta) if history else 0.0


def _next_round(job: JobBudget, client: str, counted: Sequence[Spending]) -> PlannedSpend:
    """One more round for ``client`` with the parameters of its last counted spending."""
    last = [s for s in counted if client in s.clients][-1]
    return PlannedSpend(job.job_id, client, job.dataset, last.noise_multiplier,
                        last.sample_rate, last.steps)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ClientLifetime:
    """Everything one client has spent on one dataset, across jobs (``client.budget.updated``).

    ``mechanisms`` merges the spendings with the same (noise multiplier, sample rate) by
    adding their steps: RDP composes by addition, so the merge changes no epsilon.
    """

    client_id: str
    dataset: str
    entries: int
    mechanisms: tuple[GaussianSteps, ...]
    rounds: dict[str, tuple[int, ...]]

    def epsilon(self, delta: float) -> float:
        """The lifetime epsilon at ``delta``."""
        return _composed(self.mechanisms, delta)


def lifetime_of(client: str, dataset: str, spendings: Iterable[Spending]) -> ClientLifetime:
    """The lifetime state of ``client`` from the ledger rows of every job on ``dataset``.

    Every row charged to the client counts, including updates the aggregator dropped: the
    trainer ran DP-SGD on its data whether or not the update was used.
    """
    steps: dict[tuple[float, float], int] = {}
    rounds: dict[str, set[int]] = {}
    entries = 0
    for s in spendings:
        if client not in s.clients:
            continue
        entries += 1
        key = (s.noise_multiplier, s.sample_rate)
        steps[key] = steps.get(key, 0) + s.steps
        rounds.setdefault(s.job_id, set()).add(s.round)
    mechanisms = tuple(GaussianSteps(z, q, n) for (z, q), n in sorted(steps.items()))
    by_job = {job: tuple(sorted(r)) for job, r in sorted(rounds.items())}
    return ClientLifetime(client, dataset, entries, mechanisms, by_job)
