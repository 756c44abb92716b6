"""The privacy ledger: an append-only record of epsilon spending, like a bank account.

Every entry is keyed by the id of the event that caused it. Kafka delivers at least
once, so the same event may be handled twice: appending an entry whose key is
already present is a no-op, and every total is derived from the entries, never kept
as a running counter that a redelivery could bump.

Totals compose the RDP of the entries (tighter than adding epsilons):

- per ``(job, client)``: sequential composition of that client's entries in the job;
- per job: the largest per-``(job, client)`` epsilon, because clients hold disjoint
  data (parallel composition);
- per ``(client, dataset)``: sequential composition across every job that touched
  the dataset, which is what its owner's lifetime budget is about.

Central-DP entries carry whatever client id the accountant service records them
under (each sampled client, or a pseudo-client for the population); the ledger does
not interpret ids. Filter by ``mechanism`` to keep record-level (local DP) and
user-level (central DP) guarantees apart; without a filter they compose, which is a
valid upper bound for both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from fedbus.privacy.errors import InvalidPrivacyParameterError
from fedbus.privacy.rdp import DEFAULT_RDP_ORDERS, GaussianSteps, compute_rdp, rdp_to_epsilon

__all__ = ["LedgerEntry", "Mechanism", "PlannedSpend", "PrivacyLedger", "Spend"]

logger = logging.getLogger(__name__)

Mechanism = Literal["local-dp", "central-dp"]
_MECHANISMS: frozenset[str] = frozenset({"local-dp", "central-dp"})


@dataclass(frozen=True, slots=True)
class PlannedSpend:
    """Steps a client is about to run on a dataset for a job (not yet spent)."""

    job_id: str
    client_id: str
    dataset: str
    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        GaussianSteps(self.noise_multiplier, self.sample_rate, self.steps)
        if not (self.job_id and self.client_id and self.dataset):
            raise InvalidPrivacyParameterError("job_id, client_id and dataset must be non-empty")


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One spending, keyed by the id of the event that caused it.

    Parameters
    ----------
    event_id
        Id of the causing event; the idempotency key.
    job_id, client_id, dataset
        Who spent, on what data, for which job.
    round
        Federated round number (>= 0).
    noise_multiplier, sample_rate, steps
        The Poisson-subsampled Gaussian mechanism that was run.
    mechanism
        ``"local-dp"`` (DP-SGD on the trainer) or ``"central-dp"`` (DP-FedAvg).
    """

    event_id: str
    job_id: str
    client_id: str
    dataset: str
    round: int
    noise_multiplier: float
    sample_rate: float
    steps: int
    mechanism: Mechanism

    def __post_init__(self) -> None:
        GaussianSteps(self.noise_multiplier, self.sample_rate, self.steps)
        if not (self.event_id and self.job_id and self.client_id and self.dataset):
            raise InvalidPrivacyParameterError("ids and dataset must be non-empty")
        if self.round < 0:
            raise InvalidPrivacyParameterError(f"round must be >= 0, got {self.round}")
        if self.mechanism not in _MECHANISMS:
            raise InvalidPrivacyParameterError(f"unknown mechanism {self.mechanism!r}")


@dataclass(frozen=True, slots=True)
class Spend:
    """Epsilon totals seen from one ``(job, client, dataset)``."""

    job: float
    job_client: float
    client_dataset: float


class PrivacyLedger:
    """Append-only privacy ledger with totals derived from its entries.

    Parameters
    ----------
    delta
        The delta at which every epsilon is reported.
    orders
        RDP orders used for the conversion.
    entries
        Entries to replay (for example, read back from storage); duplicates are
        ignored exactly as in :meth:`append`.
    """

    def __init__(
        self,
        *,
        delta: float,
        orders: Sequence[float] = DEFAULT_RDP_ORDERS,
        entries: Iterable[LedgerEntry] = (),
    ) -> None:
        self._delta = delta
        self._orders = tuple(float(order) for order in orders)
        rdp_to_epsilon(orders=self._orders, rdp=[0.0] * len(self._orders), delta=delta)
        self._entries: dict[str, LedgerEntry] = {}
        for entry in entries:
            self.append(entry)

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        """Every entry, in the order it was first appended."""
        return tuple(self._entries.values())

    def __len__(self) -> int:
        """Number of distinct entries."""
        return len(self._entries)

    def __contains__(self, event_id: object) -> bool:
        """Whether an entry with this event id is recorded."""
        return event_id in self._entries

    def append(self, entry: LedgerEntry) -> bool:
        """Record an entry; return ``False`` (and change nothing) if its key exists."""
        existing = self._entries.get(entry.event_id)
        if existing is not None:
            if existing != entry:
                logger.warning("event %s already recorded with other content", entry.event_id)
            return False
        self._entries[entry.event_id] = entry
        return True

    def epsilon_for_job_client(
        self, job_id: str, client_id: str, *, mechanism: Mechanism | None = None
    ) -> float:
        """Epsilon spent by one client in one job."""
        rdp = self._sum(lambda e: e.job_id == job_id and e.client_id == client_id, mechanism)
        return self._epsilon(rdp)

    def epsilon_for_job(self, job_id: str, *, mechanism: Mechanism | None = None) -> float:
        """Epsilon of a job: the largest of its clients' (parallel composition)."""
        clients = {e.client_id for e in self._entries.values() if e.job_id == job_id}
        return max(
            (self.epsilon_for_job_client(job_id, c, mechanism=mechanism) for c in clients),
            default=0.0,
        )

    def epsilon_for_client_dataset(
        self, client_id: str, dataset: str, *, mechanism: Mechanism | None = None
    ) -> float:
        """Epsilon spent on one client's dataset across every job."""
        rdp = self._sum(lambda e: e.client_id == client_id and e.dataset == dataset, mechanism)
        return self._epsilon(rdp)

    def projected_epsilon(self, planned: PlannedSpend) -> Spend:
        """Totals as they would be after the planned steps (nothing is recorded)."""
        extra = compute_rdp(
            sample_rate=planned.sample_rate,
            noise_multiplier=planned.noise_multiplier,
            steps=planned.steps,
            orders=self._orders,
        )
        job_client = self._sum(
            lambda e: e.job_id == planned.job_id and e.client_id == planned.client_id, None
        )
        client_dataset = self._sum(
            lambda e: e.client_id == planned.client_id and e.dataset == planned.dataset, None
        )
        projected_job_client = self._epsilon(job_client + extra)
        return Spend(
            job=max(self.epsilon_for_job(planned.job_id), projected_job_client),
            job_client=projected_job_client,
            client_dataset=self._epsilon(client_dataset + extra),
        )

    def would_exceed(
        self,
        planned: PlannedSpend,
        *,
        job_budget: float | None = None,
        client_dataset_budget: float | None = None,
    ) -> bool:
        """Whether the planned steps would take a total above a given budget.

        A budget left as ``None`` is not checked.
        """
        spend = self.projected_epsilon(planned)
        over_job = job_budget is not None and spend.job > job_budget
        over_dataset = client_dataset_budget is not None and spend.client_dataset > (
            client_dataset_budget
        )
        return over_job or over_dataset

    def _sum(
        self, select: Callable[[LedgerEntry], bool], mechanism: Mechanism | None
    ) -> NDArray[np.float64]:
        total = np.zeros(len(self._orders), dtype=np.float64)
        for entry in self._entries.values():
            if select(entry) and mechanism in (None, entry.mechanism):
                total += compute_rdp(
                    sample_rate=entry.sample_rate,
                    noise_multiplier=entry.noise_multiplier,
                    steps=entry.steps,
                    orders=self._orders,
                )
        return total

    def _epsilon(self, rdp: NDArray[np.float64]) -> float:
        if not np.any(rdp):
            return 0.0
        return rdp_to_epsilon(orders=self._orders, rdp=rdp, delta=self._delta)[0]
