"""Properties over random jobs: published epsilon is the composition of the ledger entries,
whatever order the topics deliver in and however often events are redelivered."""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedbus.bus import InMemoryBus
from fedbus.events import BudgetUpdated, DpUsage, Event
from fedbus.privacy import GaussianSteps, compute_epsilon_composed
from fedbus_accountant.deps import Deps
from fedbus_accountant.handlers import HANDLERS

from .fakes import FakeAccountantStore

if TYPE_CHECKING:
    from .conftest import Job

CLIENTS = ["a", "b", "c"]

dp_usage = st.builds(
    DpUsage,
    noise_multiplier=st.sampled_from([0.8, 1.1, 2.0]),
    sample_rate=st.sampled_from([0.01, 0.05, 0.2]),
    steps=st.integers(min_value=1, max_value=60),
    clipping_norm=st.just(1.0),
)
round_plan = st.lists(st.tuples(st.sampled_from(CLIENTS), dp_usage), min_size=1, max_size=3,
                      unique_by=lambda t: t[0])  # fmt: skip


async def accounted(events: list[Event]) -> dict[int, BudgetUpdated]:
    """Deliver ``events`` to a fresh accountant; its budget.updated per round."""
    bus = InMemoryBus()
    await bus.publish_many(events)
    await bus.drain(HANDLERS.bind(Deps(store=FakeAccountantStore())))
    return {e.round or 0: e for e in bus.events("budget.updated") if isinstance(e, BudgetUpdated)}


def figures(event: BudgetUpdated) -> tuple[object, ...]:
    """What a budget says (its time and trace differ from run to run)."""
    return (event.event_id, event.budget, event.total, event.clients, event.exhausted)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=st.lists(round_plan, min_size=1, max_size=4), seed=st.integers(0, 2**16))
async def test_published_epsilon_is_the_composition_of_the_entries(
    make_job: type[Job], plan: list[list[tuple[str, DpUsage]]], seed: int
) -> None:
    job = make_job(target_epsilon=5.0)
    events: list[Event] = [job.accepted()]
    for number, updates in enumerate(plan, start=1):
        events += [job.update(number, client, dp) for client, dp in updates]
        events.append(job.completed(number, [client for client, _ in updates]))
    shuffled = random.Random(seed).sample(events, len(events))
    redelivered = shuffled + random.Random(seed + 1).sample(events, len(events) // 2)

    in_order, out_of_order, duplicated = [await accounted(e) for e in (events, shuffled,
                                                                        redelivered)]  # fmt: skip

    assert sorted(in_order) == list(range(1, len(plan) + 1))
    for number, event in in_order.items():
        for client in CLIENTS:
            history = [GaussianSteps(dp.noise_multiplier, dp.sample_rate, dp.steps)
                       for r, updates in enumerate(plan[:number], start=1)
                       for c, dp in updates if c == client]  # fmt: skip
            if not history:
                assert client not in event.clients
                continue
            expected = compute_epsilon_composed(history=history, delta=job.delta)
            assert math.isclose(event.clients[client].epsilon_spent, expected, abs_tol=1e-12)
        assert event.total.epsilon_spent == max(s.epsilon_spent for s in event.clients.values())
        assert figures(out_of_order[number]) == figures(event) == figures(duplicated[number])
