"""The abstract aggregation strategy, shaped like Flower's ``Strategy``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from fedbus.aggregation.errors import EmptyRoundError, IncompatibleUpdateError
from fedbus.aggregation.helpers import apply_delta, check_same_layout
from fedbus.aggregation.updates import ClientUpdate, Model, NamedArrays

__all__ = ["Strategy"]


class Strategy(ABC):
    """Combine the client deltas of a round into the next global model.

    Strategies consume client *deltas* (``local - global``) and produce the new
    global model from the current one in two steps, each overridable:

    1. :meth:`combine` turns the round's deltas into one delta (FedAvg's weighted
       mean, a trimmed mean, Krum's choice, ...);
    2. :meth:`apply` moves the global model by that delta (plain addition, or a
       server optimizer such as FedAdam).

    Stateful strategies expose their state as named arrays through :meth:`state`
    and :meth:`load_state` so that a service can persist it between rounds.
    """

    def aggregate(self, *, global_model: NamedArrays, updates: Sequence[ClientUpdate]) -> Model:
        """Return the next global model.

        Raises
        ------
        EmptyRoundError
            If ``updates`` is empty.
        IncompatibleUpdateError
            If an update's tensor names or shapes differ from the global model's,
            or a client appears twice.
        """
        check_round(global_model=global_model, updates=updates)
        return self.apply(global_model=global_model, delta=self.combine(updates))

    @abstractmethod
    def combine(self, updates: Sequence[ClientUpdate]) -> Model:
        """Combine the round's deltas (same layout, at least one) into one delta."""

    def apply(self, *, global_model: NamedArrays, delta: NamedArrays) -> Model:
        """Move the global model by the combined delta (default: add it)."""
        return apply_delta(global_model, delta)

    def state(self) -> Model:
        """Server-side state as named arrays (empty for stateless strategies)."""
        return {}

    def load_state(self, state: NamedArrays) -> None:
        """Restore what :meth:`state` returned; stateless strategies accept only ``{}``."""
        if state:
            raise IncompatibleUpdateError(f"{type(self).__name__} has no state to load")


def check_round(*, global_model: NamedArrays, updates: Sequence[ClientUpdate]) -> None:
    """Raise unless the round has updates, each matching the model, one per client."""
    if not updates:
        raise EmptyRoundError("no updates to aggregate")
    seen: set[str] = set()
    for update in updates:
        if update.client_id in seen:
            raise IncompatibleUpdateError(f"client {update.client_id} sent two updates")
        seen.add(update.client_id)
        check_same_layout(global_model, update.delta, who=f"client {update.client_id}")
