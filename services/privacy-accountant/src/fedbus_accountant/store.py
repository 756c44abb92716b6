"""The accountant's storage port.

:class:`~fedbus_accountant.adapters.postgres.PostgresAccountantStore` implements it; one
contract test (``tests/test_store_contract.py``) runs against it and the in-memory fake of
the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from fedbus.events import BudgetUpdated
from fedbus_accountant.accounting import JobBudget, Spending

__all__ = ["AccountantStore"]


class AccountantStore(Protocol):
    """Budgets, ledger rows, completed rounds and published budget events.

    Every write is idempotent: the first fact recorded under a key wins.
    """

    async def save_budget(self, budget: JobBudget) -> None:
        """Remember a DP job's budget (a second save of the job changes nothing)."""

    async def budget(self, job_id: str) -> JobBudget | None:
        """The budget of ``job_id``, if its ``job.accepted`` was seen."""

    async def add_spending(self, spending: Spending) -> bool:
        """Append a ledger row; False (and nothing changes) when its event id is known."""

    async def spendings(self, job_id: str) -> list[Spending]:
        """The job's ledger rows, by round and event id."""

    async def spendings_on_dataset(self, dataset: str) -> list[Spending]:
        """Ledger rows of every job whose budget names ``dataset`` (lifetime caps)."""

    async def save_round(self, job_id: str, round_: int, participants: Sequence[str]) -> None:
        """Remember a completed round's participants (the first completion wins)."""

    async def rounds(self, job_id: str) -> dict[int, tuple[str, ...]]:
        """Participants of each completed round of the job."""

    async def publish(self, event: BudgetUpdated) -> BudgetUpdated:
        """Store ``event`` as its (job, round)'s budget unless one is stored; return the stored."""

    async def published(self, job_id: str) -> dict[int, BudgetUpdated]:
        """The stored ``budget.updated`` of each round of the job."""
