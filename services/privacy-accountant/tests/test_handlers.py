"""The accountant's handlers over an in-memory bus and store: what budget.updated says."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from fedbus.bus import Handler, InMemoryBus
from fedbus.errors import NonRetryableError
from fedbus.events import ClientBudgetUpdated, DpUsage, Event, PrivacyMode
from fedbus.privacy import GaussianSteps, compute_epsilon, compute_epsilon_composed
from fedbus_accountant.deps import Deps
from fedbus_accountant.handlers import HANDLERS

from .fakes import FakeAccountantStore

if TYPE_CHECKING:
    from .conftest import Job, Published

Handlers = dict[type[Event], Handler]

LOCAL = GaussianSteps(noise_multiplier=1.1, sample_rate=0.05, steps=40)
CENTRAL = GaussianSteps(noise_multiplier=1.5, sample_rate=1.0, steps=1)
CENTRAL_USAGE = DpUsage(noise_multiplier=1.5, sample_rate=1.0, steps=1, clipping_norm=0.5)


def eps(rounds: int, steps: GaussianSteps = LOCAL, delta: float = 1e-5) -> float:
    return compute_epsilon_composed(history=[steps] * rounds, delta=delta)


@pytest.fixture
def handlers(store: FakeAccountantStore) -> Handlers:
    return HANDLERS.bind(Deps(store=store))


async def run_round(bus: InMemoryBus, job: Job, round_: int, clients: list[str]) -> None:
    for client in clients:
        await bus.publish(job.update(round_, client))
    await bus.publish(job.completed(round_, clients))


async def test_two_local_dp_rounds_publish_what_fedbus_privacy_computes(
    bus: InMemoryBus, handlers: Handlers, make_job: type[Job], published: Published
) -> None:
    job = make_job()
    await bus.publish(job.accepted())
    await run_round(bus, job, 1, ["a", "b"])
    await run_round(bus, job, 2, ["a", "b"])

    await bus.drain(handlers)

    first, second = published(job)
    assert (first.round, second.round) == (1, 2)
    assert first.total.epsilon_spent == pytest.approx(
        compute_epsilon(noise_multiplier=1.1, sample_rate=0.05, steps=40, delta=1e-5), abs=1e-12
    )
    assert second.total.epsilon_spent == eps(2)
    assert {c: s.epsilon_spent for c, s in second.clients.items()} == {"a": eps(2), "b": eps(2)}
    assert second.total.epsilon_remaining == pytest.approx(8.0 - eps(2))
    assert (second.budget.epsilon, second.budget.delta, second.total.delta) == (8.0, 1e-5, 1e-5)
    assert not second.exhausted
    assert second.source == "privacy-accountant"


async def test_a_duplicate_update_spends_once(
    bus: InMemoryBus, handlers: Handlers, make_job: type[Job], published: Published
) -> None:
    job = make_job()
    update = job.update(1, "a")
    await bus.publish(job.accepted())
    await bus.publish(update)
    await bus.publish(update)  # redelivered: same event id
    await bus.publish(job.completed(1, ["a"]))
    await bus.publish(update)

    await bus.drain(handlers)

    events = published(job)
    assert {e.event_id for e in events} == {events[0].event_id}  # one event, maybe re-emitted
    assert events[0].clients["a"].epsilon_spent == eps(1)


async def test_a_round_completed_before_its_updates_waits_for_them(
    bus: InMemoryBus, handlers: Handlers, make_job: type[Job], published: Published
) -> None:
    job = make_job()
    await bus.publish(job.completed(1, ["a", "b"]))
    await bus.publish(job.update(1, "a"))
    await bus.drain(handlers)
    assert published(job) == []  # no job.accepted yet
    await bus.publish(job.accepted())
    await bus.drain(handlers)
    assert published(job) == []  # b's update missing

    await bus.publish(job.update(1, "b"))
    await bus.drain(handlers)

    [event] = published(job)
    assert event.round == 1
    assert set(event.clients) == {"a", "b"}


async def test_rounds_publish_in_order_and_count_only_rounds_up_to_their_own(
    bus: InMemoryBus, handlers: Handlers, make_job: type[Job], published: Published
) -> None:
    job = make_job()
    await bus.publish(job.accepted())
    await bus.publish(job.completed(2, ["a"]))
    await bus.publish(job.update(2, "a"))
    await bus.publish(job.completed(1, ["a"]))
    await bus.drain(handlers)
    assert published(job) == []  # round 1's update is missing, so round 2 waits too

    await bus.publish(job.update(1, "a"))
    await bus.drain(handlers)

    assert [(e.round, e.total.epsilon_spent) for e in published(job)] == [(1, eps(1)), (2, eps(2))]


async def test_a_dropped_clients_update_is_not_charged_to_the_job(
    bus: InMemoryBus, handlers: Handlers, make_job: type[Job], published: Published
) -> None:
    job = make_job()
    await bus.publish(job.accepted())
    await bus.publish(job.update(1, "late"))
    await run_round(bus, job, 1, ["a"])

    await bus.drain(handlers)

    [event] = published(job)
    assert set(event.clients) == {"a"}


async def test_exhausted_when_one_more_round_would_pass_the_budget(
    bus: InMemoryBus, handlers: Handlers, make_job: type[Job], published: Published
) -> None:
    # Between 2 and 3 rounds' worth: round 1 leaves room, round 2 does not.
    job = make_job(target_epsilon=(eps(2) + eps(3)) / 2)
    await bus.publish(job.accepted())
    await run_round(bus, job, 1, ["a", "b"])
    await run_round(bus, job, 2, ["a", "b"])

    await bus.drain(handlers)

    first, second = published(job)
    assert not first.exhausted
    assert second.exhausted
    assert second.total.epsilon_spent < job.target_epsilon


async def test_a_client_with_a_larger_sample_rate_exhausts_the_job(
    bus: InMemoryBus, handlers: Handlers, make_job: type[Job], published: Published
) -> None:
    job = make_job(target_epsilon=eps(2) * 1.01)
    greedy = DpUsage(noise_multiplier=1.1, sample_rate=0.2, steps=40, clipping_norm=1.0)
    await bus.publish(job.accepted())
    await bus.publish(job.update(1, "a"))
    await bus.publish(job.update(1, "b", greedy))
    await bus.publish(job.completed(1, ["a", "b"]))

    await bus.drain(handlers)

    [event] = published(job)
    assert event.clients["b"].epsilon_spent > event.clients["a"].epsilon_spent
    assert event.total.epsilon_spent == event.clients["b"].epsilon_spent
    assert event.exhausted


async def test_central_dp_composes_the_releases_and_charges_participants(
    bus: InMemoryBus, handlers: Handlers, make_job: type[Job], published: Published
) -> None:
    target = (eps(2, CENTRAL) + eps(3, CENTRAL)) / 2
    job = make_job(mode=PrivacyMode.CENTRAL_DP, target_epsilon=target)
    release = DpUsage(noise_multiplier=1.5, sample_rate=1.0, steps=1, clipping_norm=0.5)
    clipped = DpUsage(noise_multiplier=0.0, sample_rate=1.0, steps=1, clipping_norm=0.5)
    await bus.publish(job.accepted())
    for round_, clients in [(1, ["a", "b"]), (2, ["b", "c"])]:
        for client in clients:
            await bus.publish(job.update(round_, client, clipped))  # clipping only: no spend
        await bus.publish(job.completed(round_, clients, release))

    await bus.drain(handlers)

    first, second = published(job)
    assert first.total.epsilon_spent == eps(1, CENTRAL)
    assert second.total.epsilon_spent == eps(2, CENTRAL)
    spent = {c: s.epsilon_spent for c, s in second.clients.items()}
    assert spent == {"a": eps(1, CENTRAL), "b": eps(2, CENTRAL), "c": eps(1, CENTRAL)}
    assert (first.exhausted, second.exhausted) == (False, True)


def lifetimes(bus: InMemoryBus, client: str, dataset: str = "mnist") -> list[ClientBudgetUpdated]:
    return [e for e in bus.events("client.budget.updated") if isinstance(e, ClientBudgetUpdated)
            and e.client_id == client and e.dataset == dataset]  # fmt: skip


async def test_a_clients_lifetime_spend_composes_its_jobs_on_the_same_dataset(
    make_job: type[Job], published: Published, bus: InMemoryBus
) -> None:
    store = FakeAccountantStore()
    cap = eps(3) * 1.01
    handlers = HANDLERS.bind(Deps(store=store, lifetime_epsilon=cap))
    first, second, elsewhere = make_job(), make_job(), make_job(dataset="cifar")
    for job in (first, second, elsewhere):
        await bus.publish(job.accepted())
    await run_round(bus, first, 1, ["a"])
    await run_round(bus, first, 2, ["a"])
    await run_round(bus, elsewhere, 1, ["a"])
    await bus.drain(handlers)
    await run_round(bus, second, 1, ["a", "b"])

    await bus.drain(handlers)

    latest = max(lifetimes(bus, "a"), key=lambda e: e.entries)
    assert latest.entries == 3  # two rounds of `first`, one of `second`; cifar is apart
    assert latest.epsilon_spent == pytest.approx(eps(3), rel=1e-12)
    assert [(m.noise_multiplier, m.sample_rate, m.steps) for m in latest.mechanisms] == [
        (1.1, 0.05, 120)  # the three spendings merged: same mechanism, steps added
    ]
    assert latest.rounds == {first.job_id: [1, 2], second.job_id: [1]}
    assert (latest.cap, latest.delta, latest.job_id) == (cap, 1e-5, second.job_id)
    assert [e.entries for e in lifetimes(bus, "a", "cifar")] == [1]
    assert [e.entries for e in lifetimes(bus, "b")] == [1]
    # The job's own budget decides `exhausted`; a client near its lifetime cap is
    # orchestration's to leave out of the next selection, not a reason to end the job.
    [other] = published(second)
    assert other.total.epsilon_spent == eps(1)
    assert not other.exhausted


async def test_a_redelivered_update_announces_the_same_lifetime_under_the_same_id(
    bus: InMemoryBus, handlers: Handlers, make_job: type[Job]
) -> None:
    job = make_job()
    update = job.update(1, "a")
    await bus.publish(job.accepted())
    await bus.publish(update)
    await bus.drain(handlers)
    await bus.publish(update)
    await bus.drain(handlers)

    first, again = lifetimes(bus, "a")
    assert again.event_id == first.event_id  # consumers deduplicate it
    same = {"time", "traceparent"}
    assert again.model_dump(exclude=same) == first.model_dump(exclude=same)
    assert first.entries == 1


async def test_spendings_seen_before_job_accepted_reach_the_lifetime_when_it_arrives(
    bus: InMemoryBus, handlers: Handlers, make_job: type[Job]
) -> None:
    job = make_job()
    await bus.publish(job.update(1, "a"))
    await bus.drain(handlers)
    assert lifetimes(bus, "a") == []  # dataset unknown until job.accepted

    await bus.publish(job.accepted())
    await bus.drain(handlers)

    [announced] = lifetimes(bus, "a")
    assert (announced.entries, announced.rounds) == (1, {job.job_id: [1]})


async def test_a_central_release_charges_every_participants_lifetime(
    bus: InMemoryBus, handlers: Handlers, make_job: type[Job]
) -> None:
    job = make_job(mode=PrivacyMode.CENTRAL_DP)
    await bus.publish(job.accepted())
    await bus.publish(job.completed(1, ["a", "b"], dp=CENTRAL_USAGE))
    await bus.drain(handlers)

    for client in ("a", "b"):
        [announced] = lifetimes(bus, client)
        assert announced.epsilon_spent == pytest.approx(eps(1, CENTRAL), rel=1e-12)
        assert announced.cap is None


async def test_a_published_round_is_re_emitted_unchanged_when_asked_again(
    bus: InMemoryBus, handlers: Handlers, make_job: type[Job], published: Published
) -> None:
    job = make_job()
    completed = job.completed(1, ["a"])
    await bus.publish(job.accepted())
    await bus.publish(job.update(1, "a"))
    await bus.publish(completed)
    await bus.drain(handlers)

    await bus.publish(completed)  # redelivered after a crash
    await bus.drain(handlers)

    first, again = published(job)
    assert again == first


async def test_jobs_without_dp_are_ignored(
    bus: InMemoryBus, handlers: Handlers, make_job: type[Job], published: Published
) -> None:
    job = make_job(mode=PrivacyMode.NONE)
    await bus.publish(job.accepted())
    await bus.publish(job.update(1, "a", None))
    await bus.publish(job.completed(1, ["a"]))

    await bus.drain(handlers)

    assert published(job) == []


async def test_a_dp_job_without_a_budget_is_refused(
    handlers: Handlers, make_job: type[Job]
) -> None:
    job = make_job()
    event = job.accepted()
    privacy = event.spec.privacy.model_copy(update={"target_epsilon": None})
    broken = event.model_copy(update={"spec": event.spec.model_copy(update={"privacy": privacy})})

    with pytest.raises(NonRetryableError, match="target_epsilon"):
        await handlers[type(event)](broken)


async def test_impossible_dp_facts_are_refused_when_recorded(
    handlers: Handlers, make_job: type[Job]
) -> None:
    job = make_job()
    bad = job.update(1, "a", DpUsage(noise_multiplier=1.0, sample_rate=2.0, steps=1,
                                      clipping_norm=1.0))  # fmt: skip

    with pytest.raises(NonRetryableError, match="sample_rate"):
        await handlers[type(bad)](bad)
