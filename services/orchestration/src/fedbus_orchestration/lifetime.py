"""Each client's lifetime privacy cap across jobs: who may still train a DP round.

Pure functions. The deployment may cap the epsilon one client spends on one dataset across
every job (``FEDBUS_CLIENT_LIFETIME_EPSILON``). The privacy-accountant announces what each
client has spent (``client.budget.updated``: the Gaussian mechanisms its ledger holds, and
the (job, round) pairs they came from); orchestration adds what is in flight and projects:

    lifetime(c) = accounted(c) + pending(c) + planned(c)

- *accounted*: the latest ``client.budget.updated`` of ``c`` on the dataset (most entries);
- *pending*: the current round of every running DP job on the dataset that selected ``c`` and
  that the accountant has not yet listed for ``c`` (a reservation: those rounds are training
  now, and their spend reaches the ledger later);
- *planned*: the round (selection) or every planned round (admission) of the job at hand.

All three compose by RDP at the job's delta (:func:`fedbus.privacy.compute_epsilon_composed`).
A client is selected only if the projection stays within the cap
(:func:`select_within_caps`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from fedbus.events import ClientBudgetUpdated, JobSpec, PrivacyMode
from fedbus.privacy import GaussianSteps, compute_epsilon_composed
from fedbus_orchestration.noise import local_dp_steps, round_noise_multiplier
from fedbus_orchestration.selection import select_clients

__all__ = [
    "CappedSelection",
    "ClientSpend",
    "InFlight",
    "Lifetimes",
    "over_lifetime_cap",
    "pending_rounds",
    "round_steps",
    "select_within_caps",
]


@dataclass(frozen=True)
class ClientSpend:
    """What the accountant last announced of one client's spend on one dataset."""

    client_id: str
    dataset: str
    entries: int
    mechanisms: tuple[GaussianSteps, ...]
    rounds: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, event: ClientBudgetUpdated) -> ClientSpend:
        """The state a ``client.budget.updated`` announces."""
        return cls(
            client_id=event.client_id,
            dataset=event.dataset,
            entries=event.entries,
            mechanisms=tuple(
                GaussianSteps(m.noise_multiplier, m.sample_rate, m.steps) for m in event.mechanisms
            ),
            rounds={job: tuple(rounds) for job, rounds in event.rounds.items()},
        )

    def accounts(self, job_id: str, round_: int) -> bool:
        """True when the ledger holds this client's spending of ``job_id``'s ``round_``."""
        return round_ in self.rounds.get(job_id, ())


def round_steps(
    spec: JobSpec, client: str, noise_multiplier: float, samples: Mapping[str, int]
) -> GaussianSteps:
    """What one round of ``spec`` spends on ``client`` at ``noise_multiplier``.

    Local DP: DP-SGD over the client's records (as :func:`local_dp_steps`; one full batch per
    epoch when its sample count is unknown). Central DP: one release at sampling rate 1.
    """
    if spec.privacy.mode is PrivacyMode.CENTRAL_DP:
        return GaussianSteps(noise_multiplier, 1.0, 1)
    training = spec.training
    n = samples.get(client, 0)
    if n <= 0:
        return GaussianSteps(noise_multiplier, 1.0, training.local_epochs)
    q, steps = local_dp_steps(
        num_samples=n, batch_size=training.batch_size, local_epochs=training.local_epochs
    )
    return GaussianSteps(noise_multiplier, q, steps)


@dataclass(frozen=True)
class InFlight:
    """A running DP job's current round, as orchestration stored it."""

    job_id: str
    round: int
    spec: JobSpec
    selected: tuple[str, ...]
    noise_multiplier: float


def pending_rounds(
    rounds: Iterable[InFlight],
    spent: Mapping[str, ClientSpend],
    samples: Mapping[str, int],
    *,
    dataset: str,
) -> dict[str, list[GaussianSteps]]:
    """Per client: the in-flight rounds on ``dataset`` the accountant has not listed yet."""
    out: dict[str, list[GaussianSteps]] = {}
    for r in rounds:
        if r.spec.dataset != dataset or r.spec.privacy.mode is PrivacyMode.NONE:
            continue
        for client in r.selected:
            known = spent.get(client)
            if known is not None and known.accounts(r.job_id, r.round):
                continue
            steps = round_steps(r.spec, client, r.noise_multiplier, samples)
            out.setdefault(client, []).append(steps)
    return out


@dataclass(frozen=True)
class Lifetimes:
    """The cap, and every client's accounted and pending spend on one dataset."""

    cap: float
    spent: Mapping[str, ClientSpend] = field(default_factory=dict)
    pending: Mapping[str, Sequence[GaussianSteps]] = field(default_factory=dict)

    def projected(self, client: str, planned: Sequence[GaussianSteps], delta: float) -> float:
        """The client's lifetime epsilon at ``delta`` after ``planned`` (and what is pending)."""
        known = self.spent.get(client)
        history = [
            *(known.mechanisms if known is not None else ()),
            *self.pending.get(client, ()),
            *planned,
        ]
        return compute_epsilon_composed(history=history, delta=delta) if history else 0.0

    def allows(self, client: str, planned: Sequence[GaussianSteps], delta: float) -> bool:
        """True when ``planned`` keeps the client within the cap."""
        return self.projected(client, planned, delta) <= self.cap


def over_lifetime_cap(
    spec: JobSpec,
    selected: Sequence[str],
    noise: float | None,
    samples: Mapping[str, int],
    lifetimes: Lifetimes | None,
) -> list[str]:
    """The selected clients one more round of ``spec`` would take past their lifetime cap."""
    delta = spec.privacy.delta
    if lifetimes is None or noise is None or delta is None:
        return []
    return [
        c
        for c in selected
        if not lifetimes.allows(c, [round_steps(spec, c, noise, samples)], delta)
    ]


@dataclass(frozen=True)
class CappedSelection:
    """A round's clients after leaving out those at their lifetime cap."""

    selected: list[str]
    noise_multiplier: float | None
    capped: list[str]
    """The clients left out (sorted): one more round would take them past the cap."""
    remaining: int
    """How many eligible clients were left to select from once the capped ones were out."""


def select_within_caps(
    spec: JobSpec,
    eligible: Sequence[str],
    *,
    seed: int,
    round: int,
    attempt: int,
    samples: Mapping[str, int],
    lifetimes: Lifetimes | None,
) -> CappedSelection:
    """Select a round's clients (:func:`select_clients`) so that none passes its lifetime cap.

    Select, then leave out every selected client the round would take past its cap and select
    again from the rest: the noise depends on who is selected, so the check runs on the final
    selection. The pool shrinks each time, so this ends. Reproducible for
    ``(seed, round, attempt)`` whatever the order of ``eligible``.

    Raises
    ------
    fedbus.privacy.UnreachableTargetError
        When no noise multiplier fits a selection's planned rounds into the budget.
    """
    pool = sorted(eligible)
    capped: list[str] = []
    while True:
        selected = select_clients(spec, pool, seed=seed, round=round, attempt=attempt)
        noise = round_noise_multiplier(spec, selected=selected, samples=samples)
        over = over_lifetime_cap(spec, selected, noise, samples, lifetimes)
        if not over:
            return CappedSelection(selected, noise, sorted(capped), len(pool))
        capped += over
        pool = [c for c in pool if c not in over]
