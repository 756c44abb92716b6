"""The one dependency object the accountant's handlers take."""

from __future__ import annotations

from dataclasses import dataclass

from fedbus_accountant.store import AccountantStore

__all__ = ["Deps"]


@dataclass(frozen=True)
class Deps:
    """What the accountant's handlers need.

    Attributes
    ----------
    store
        Budgets, the ledger, completed rounds and the published budget events.
    lifetime_epsilon
        The per-client lifetime cap announced in ``client.budget.updated``
        (``FEDBUS_CLIENT_LIFETIME_EPSILON``); None: no cap.
    """

    store: AccountantStore
    lifetime_epsilon: float | None = None
