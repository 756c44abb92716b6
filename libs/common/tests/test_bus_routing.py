"""Routing tables: typed pairs (checked by mypy), one handler per event, deps bound."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api as mypy_api

from fedbus.bus import Routes, route
from fedbus.events import Event, JobRequested, RoundCompleted

CASES = Path(__file__).parent / "typing_cases"


def test_mypy_rejects_a_handler_routed_for_an_event_it_does_not_take() -> None:
    case = CASES / "routes_mismatch.py"
    out, _, status = mypy_api.run(
        ["--strict", "--no-incremental", "--cache-dir=/dev/null", str(case)]
    )
    wrong = [i + 1 for i, line in enumerate(case.read_text().splitlines()) if "# WRONG" in line]
    flagged = sorted({int(line.split(":")[1]) for line in out.splitlines() if ": error:" in line})
    assert status == 1
    assert flagged == wrong, out


async def _on_completed(event: RoundCompleted, *, deps: list[str]) -> list[Event]:
    deps.append(event.event_id)
    return []


def test_a_class_routed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="RoundCompleted is routed twice"):
        Routes[list[str]](
            route(RoundCompleted, _on_completed), route(RoundCompleted, _on_completed)
        )


def test_bind_gives_one_argument_handlers_and_topics_follow_the_table() -> None:
    routes = Routes[list[str]](route(RoundCompleted, _on_completed))
    seen: list[str] = []
    bound = routes.bind(seen)
    assert list(bound) == [RoundCompleted]
    assert routes.topics == ["round.completed"]
    assert JobRequested not in bound
