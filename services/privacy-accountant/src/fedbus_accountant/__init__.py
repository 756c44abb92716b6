"""fedbus privacy-accountant: the single source of epsilon.

Consumes ``job.accepted``, ``update.submitted`` and ``round.completed``; keeps an append-only
privacy ledger keyed by the causing event ids in PostgreSQL; publishes ``budget.updated``
once per (job, round). See ``docs/privacy.md``.
"""

from fedbus_accountant.accounting import (
    BudgetFigures,
    JobBudget,
    Spending,
    counted_spendings,
    figures_after_round,
    is_ready,
    ledger_entries,
)
from fedbus_accountant.deps import Deps
from fedbus_accountant.handlers import HANDLERS, SOURCE, budget_event
from fedbus_accountant.settings import AccountantSettings
from fedbus_accountant.store import AccountantStore

__all__ = [
    "HANDLERS",
    "SOURCE",
    "AccountantSettings",
    "AccountantStore",
    "BudgetFigures",
    "Deps",
    "JobBudget",
    "Spending",
    "budget_event",
    "counted_spendings",
    "figures_after_round",
    "is_ready",
    "ledger_entries",
]
