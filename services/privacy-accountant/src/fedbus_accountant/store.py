"""The accountant's storage port and its in-memory implementation (unit tests, local tries).

:class:`~fedbus_accountant.adapters.postgres.PostgresAccountantStore` is the production one;
one contract test (``tests/test_store_contract.py``) runs against both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from fedbus.events import BudgetUpdated
from fedbus_accountant.accounting import JobBudget, Spending

__all__ = ["AccountantStore", "InMemoryAccountantStore"]


class AccountantStore(ABC):
    """Budgets, ledger rows, completed rounds and published budget events.

    Every write is idempotent: the first fact recorded under a key wins.
    """

    @abstractmethod
    async def save_budget(self, budget: JobBudget) -> None:
        """Remember a DP job's budget (a second save of the job changes nothing)."""

    @abstractmethod
    async def budget(self, job_id: str) -> JobBudget | None:
        """The budget of ``job_id``, if its ``job.accepted`` was seen."""

    @abstractmethod
    async def add_spending(self, spending: Spending) -> bool:
        """Append a ledger row; False (and nothing changes) when its event id is known."""

    @abstractmethod
    async def spendings(self, job_id: str) -> list[Spending]:
        """The job's ledger rows, by round and event id."""

    @abstractmethod
    async def spendings_on_dataset(self, dataset: str) -> list[Spending]:
        """Ledger rows of every job whose budget names ``dataset`` (lifetime caps)."""

    @abstractmethod
    async def save_round(self, job_id: str, round_: int, participants: Sequence[str]) -> None:
        """Remember a completed round's participants (the first completion wins)."""

    @abstractmethod
    async def rounds(self, job_id: str) -> dict[int, tuple[str, ...]]:
        """Participants of each completed round of the job."""

    @abstractmethod
    async def publish(self, event: BudgetUpdated) -> BudgetUpdated:
        """Store ``event`` as its (job, round)'s budget unless one is stored; return the stored."""

    @abstractmethod
    async def published(self, job_id: str) -> dict[int, BudgetUpdated]:
        """The stored ``budget.updated`` of each round of the job."""


class InMemoryAccountantStore(AccountantStore):
    """Dictionaries; same behaviour as the PostgreSQL store, nothing persisted."""

    def __init__(self) -> None:
        self._budgets: dict[str, JobBudget] = {}
        self._ledger: dict[str, Spending] = {}
        self._rounds: dict[str, dict[int, tuple[str, ...]]] = {}
        self._published: dict[tuple[str, int], BudgetUpdated] = {}

    async def save_budget(self, budget: JobBudget) -> None:
        """See :class:`AccountantStore`."""
        self._budgets.setdefault(budget.job_id, budget)

    async def budget(self, job_id: str) -> JobBudget | None:
        """See :class:`AccountantStore`."""
        return self._budgets.get(job_id)

    async def add_spending(self, spending: Spending) -> bool:
        """See :class:`AccountantStore`."""
        if spending.event_id in self._ledger:
            return False
        self._ledger[spending.event_id] = spending
        return True

    async def spendings(self, job_id: str) -> list[Spending]:
        """See :class:`AccountantStore`."""
        rows = [s for s in self._ledger.values() if s.job_id == job_id]
        return sorted(rows, key=lambda s: s.sort_key)

    async def spendings_on_dataset(self, dataset: str) -> list[Spending]:
        """See :class:`AccountantStore`."""
        jobs = {j for j, b in self._budgets.items() if b.dataset == dataset}
        rows = [s for s in self._ledger.values() if s.job_id in jobs]
        return sorted(rows, key=lambda s: (s.job_id, *s.sort_key))

    async def save_round(self, job_id: str, round_: int, participants: Sequence[str]) -> None:
        """See :class:`AccountantStore`."""
        self._rounds.setdefault(job_id, {}).setdefault(round_, tuple(participants))

    async def rounds(self, job_id: str) -> dict[int, tuple[str, ...]]:
        """See :class:`AccountantStore`."""
        return dict(sorted(self._rounds.get(job_id, {}).items()))

    async def publish(self, event: BudgetUpdated) -> BudgetUpdated:
        """See :class:`AccountantStore`."""
        return self._published.setdefault((event.job_id, _round_of(event)), event)

    async def published(self, job_id: str) -> dict[int, BudgetUpdated]:
        """See :class:`AccountantStore`."""
        return {r: e for (j, r), e in sorted(self._published.items()) if j == job_id}


def _round_of(event: BudgetUpdated) -> int:
    # The accountant only publishes per round; 0 stands for the (unused) initial budget.
    return event.round if event.round is not None else 0
