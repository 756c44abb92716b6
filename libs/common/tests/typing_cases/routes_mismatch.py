"""A routing table with a wrong pair: mypy must reject line ``WRONG``. Not imported by tests."""

from __future__ import annotations

from dataclasses import dataclass

from fedbus.bus import Routes, route
from fedbus.events import Event, JobRequested, RoundCompleted


@dataclass
class Deps:
    """A service's dependency object."""

    name: str


class OtherDeps:
    """Another service's dependency object."""


async def on_round_completed(event: RoundCompleted, *, deps: Deps) -> list[Event]:
    """Takes a round.completed."""
    return []


async def on_anything(event: Event, *, deps: Deps) -> list[Event]:
    """Takes every event: fine for any row."""
    return []


async def needs_other(event: JobRequested, *, deps: OtherDeps) -> list[Event]:
    """Takes another service's dependencies."""
    return []


ROUTES = Routes[Deps](
    route(RoundCompleted, on_round_completed),
    route(JobRequested, on_anything),
    route(JobRequested, on_round_completed),  # WRONG: event
    route(JobRequested, needs_other),  # WRONG: deps
)
