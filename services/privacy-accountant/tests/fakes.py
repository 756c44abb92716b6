"""In-memory fakes of the accountant's ports, for its unit tests (never shipped in the wheel)."""

from __future__ import annotations

from collections.abc import Sequence

from fedbus.events import BudgetUpdated
from fedbus_accountant.accounting import JobBudget, Spending

__all__ = ["FakeAccountantStore"]


class FakeAccountantStore:
    """Dictionaries; same behaviour as the PostgreSQL store, nothing persisted."""

    def __init__(self) -> None:
        self._budgets: dict[str, JobBudget] = {}
        self._ledger: dict[str, Spending] = {}
        self._rounds: dict[str, dict[int, tuple[str, ...]]] = {}
        self._published: dict[tuple[str, int], BudgetUpdated] = {}

    async def save_budget(self, budget: JobBudget) -> None:
        """See :class:`~fedbus_accountant.store.AccountantStore`."""
        self._budgets.setdefault(budget.job_id, budget)

    async def budget(self, job_id: str) -> JobBudget | None:
        """See :class:`~fedbus_accountant.store.AccountantStore`."""
        return self._budgets.get(job_id)

    async def add_spending(self, spending: Spending) -> bool:
        """See :class:`~fedbus_accountant.store.AccountantStore`."""
        if spending.event_id in self._ledger:
            return False
        self._ledger[spending.event_id] = spending
        return True

    async def spendings(self, job_id: str) -> list[Spending]:
        """See :class:`~fedbus_accountant.store.AccountantStore`."""
        rows = [s for s in self._ledger.values() if s.job_id == job_id]
        return sorted(rows, key=lambda s: s.sort_key)

    async def spendings_on_dataset(self, dataset: str) -> list[Spending]:
        """See :class:`~fedbus_accountant.store.AccountantStore`."""
        jobs = {j for j, b in self._budgets.items() if b.dataset == dataset}
        rows = [s for s in self._ledger.values() if s.job_id in jobs]
        return sorted(rows, key=lambda s: (s.job_id, *s.sort_key))

    async def save_round(self, job_id: str, round_: int, participants: Sequence[str]) -> None:
        """See :class:`~fedbus_accountant.store.AccountantStore`."""
        self._rounds.setdefault(job_id, {}).setdefault(round_, tuple(participants))

    async def rounds(self, job_id: str) -> dict[int, tuple[str, ...]]:
        """See :class:`~fedbus_accountant.store.AccountantStore`."""
        return dict(sorted(self._rounds.get(job_id, {}).items()))

    async def publish(self, event: BudgetUpdated) -> BudgetUpdated:
        """See :class:`~fedbus_accountant.store.AccountantStore`."""
        return self._published.setdefault((event.job_id, _round_of(event)), event)

    async def published(self, job_id: str) -> dict[int, BudgetUpdated]:
        """See :class:`~fedbus_accountant.store.AccountantStore`."""
        return {r: e for (j, r), e in sorted(self._published.items()) if j == job_id}


def _round_of(event: BudgetUpdated) -> int:
    # The accountant only publishes per round; 0 stands for the (unused) initial budget.
    return event.round if event.round is not None else 0
