"""Typed routing tables: which handler takes which event, checked by mypy.

Every service's ``handlers.py`` ends with one table built from :func:`route` pairs. Each
handler takes one typed event and one keyword argument, ``deps``, the service's dependency
object, and returns the events to publish:

>>> async def on_round_completed(event: RoundCompleted, *, deps: Deps) -> list[Event]: ...
>>> HANDLERS = Routes[Deps](route(RoundCompleted, on_round_completed))
>>> runner = ConsumerRunner(..., handlers=HANDLERS.bind(deps))

:func:`route` ties the event class to the handler's first parameter, so mypy rejects
``route(JobRequested, on_round_completed)``: the handler cannot take a ``JobRequested``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from fedbus.bus.codec import Event
from fedbus.bus.consumer import Handler

__all__ = ["EventHandler", "Route", "Routes", "route"]

E_contra = TypeVar("E_contra", bound=Event, contravariant=True)
D_contra = TypeVar("D_contra", contravariant=True)
E = TypeVar("E", bound=Event)
D = TypeVar("D")


class EventHandler(Protocol[E_contra, D_contra]):
    """``async def handler(event: E, *, deps: D) -> Sequence[Event] | None``."""

    def __call__(self, event: E_contra, /, *, deps: D_contra) -> Awaitable[Sequence[Event] | None]:
        """Handle one event; return the events to publish (or None)."""


@dataclass(frozen=True)
class Route(Generic[D]):
    """One row of a routing table; build it with :func:`route` so the pair is type-checked."""

    event: type[Event]
    handler: EventHandler[Any, D]


def route(event: type[E], handler: EventHandler[E, D]) -> Route[D]:
    """The row ``event -> handler``; mypy checks that ``handler`` takes an ``event``."""
    return Route(event, handler)


class Routes(Generic[D]):
    """A service's routing table: event class -> handler, one handler per class.

    Parameters
    ----------
    routes
        The rows, from :func:`route`. A class routed twice is a ``ValueError``.
    """

    def __init__(self, *routes: Route[D]) -> None:
        table: dict[type[Event], EventHandler[Any, D]] = {}
        for row in routes:
            if row.event in table:
                raise ValueError(f"{row.event.__name__} is routed twice")
            table[row.event] = row.handler
        self._table = table

    def __iter__(self) -> Iterator[type[Event]]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def __getitem__(self, event: type[Event]) -> EventHandler[Any, D]:
        return self._table[event]

    @property
    def topics(self) -> list[str]:
        """The topics of the routed events, sorted (what a runner subscribes to)."""
        return sorted(cls.event_type() for cls in self._table)

    def bind(self, deps: D) -> dict[type[Event], Handler]:
        """The table with ``deps`` bound: one-argument handlers for the consumer runner."""
        return {cls: functools.partial(handler, deps=deps) for cls, handler in self._table.items()}
