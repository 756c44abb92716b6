"""round.started -> one round.assigned per selected trainer, with URLs for its own objects only."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import pytest

from fedbus.bus import InMemoryBus
from fedbus.events import (
    Event,
    LoraSpec,
    ModelRef,
    Optimizer,
    RoundAssigned,
    RoundStarted,
    TrainingConfig,
)
from fedbus.storage import InMemoryArtifactStore
from fedbus_aggregator import HANDLERS, Deps
from fedbus_aggregator.grants import MAX_EXPIRY_S, assignments, grant_expiry_s
from fedbus_aggregator.handlers import on_round_started

from .fakes import T0, FakeModels, FakeRoundStore, ManualClock
from .fakes import constant_delta as delta


class FakePresigner:
    """URLs that spell out what they grant: ``fake://<op>/<key>?expires=<s>``."""

    def __init__(self) -> None:
        self.signed: list[tuple[str, str, int]] = []

    def presign(
        self, operation: Literal["get_object", "put_object"], key: str, *, expires_s: int
    ) -> str:
        self.signed.append((operation, key, expires_s))
        return f"fake://{operation}/{key}?expires={expires_s}"


class FakeTopics:
    """Remembers which ``round.assigned.<client_id>`` topics were asked for."""

    def __init__(self) -> None:
        self.ensured: list[str] = []

    async def ensure(self, values: Iterable[str]) -> list[str]:
        names = [f"round.assigned.{v}" for v in values]
        self.ensured += names
        return names


@pytest.fixture
def presigner() -> FakePresigner:
    return FakePresigner()


@pytest.fixture
def topics() -> FakeTopics:
    return FakeTopics()


@pytest.fixture
def deps(
    artifacts: InMemoryArtifactStore,
    clock: ManualClock,
    presigner: FakePresigner,
    topics: FakeTopics,
) -> Deps:
    return Deps(
        store=FakeRoundStore(), artifacts=artifacts, models=FakeModels(), clock=clock,
        presigner=presigner, assigned_topics=topics, grant_grace_s=120,
    )  # fmt: skip


def assigned(bus: InMemoryBus) -> dict[str, RoundAssigned]:
    out: dict[str, RoundAssigned] = {}
    for topic, events in bus.topics.items():
        for e in events:
            if isinstance(e, RoundAssigned):
                assert topic == f"round.assigned.{e.client_id}"  # on its own topic only
                out[e.client_id] = e
    return out


async def run(bus: InMemoryBus, deps: Deps, *events: Any) -> None:
    await bus.publish_many(events)
    await bus.drain(HANDLERS.bind(deps))


GLOBAL = ModelRef(object_key="jobs/job-1/round-1/global/" + "ab" * 32, size_bytes=9,
                  sha256="ab" * 32)  # fmt: skip


async def test_each_assignment_carries_the_model_options_and_optimizer(
    deps: Deps, started: Callable[..., RoundStarted]
) -> None:
    bus = InMemoryBus()
    training = TrainingConfig(optimizer=Optimizer.ADAMW, weight_decay=0.01)
    lora = LoraSpec(r=4, target_modules=["fc1"])
    event = started(model_options={"channels": 16}, training=training, lora=lora)

    await run(bus, deps, event)

    for grant in assigned(bus).values():
        assert grant.model_options == {"channels": 16}
        assert grant.training == training
        assert grant.lora == lora


async def test_each_selected_client_gets_one_assignment_with_its_own_update_key(
    deps: Deps,
    started: Callable[..., RoundStarted],
    topics: FakeTopics,
    presigner: FakePresigner,
) -> None:
    bus = InMemoryBus()
    event = started(round_=2, clients=("a", "b", "c"), global_model=GLOBAL, deadline_s=60)

    await run(bus, deps, event)

    grants = assigned(bus)
    assert sorted(grants) == ["a", "b", "c"]
    assert sorted(topics.ensured) == ["round.assigned.a", "round.assigned.b", "round.assigned.c"]
    for client, grant in grants.items():
        key = f"jobs/job-1/round-2/updates/{client}/update"
        assert grant.update_key == key
        assert grant.update_url == f"fake://put_object/{key}?expires=180"
        assert grant.global_model_url == f"fake://get_object/{GLOBAL.object_key}?expires=180"
        assert grant.started_event_id == event.event_id
        assert (grant.job_id, grant.round, grant.global_model) == ("job-1", 2, GLOBAL)
        assert (grant.model, grant.dataset, grant.seed) == (event.model, event.dataset, event.seed)
        assert grant.urls_expire_at == T0 + timedelta(seconds=60 + 120)
    # Nothing else is signed: one GET of the global model, one PUT per client.
    assert sorted({(op, key) for op, key, _ in presigner.signed}) == sorted(
        [("get_object", GLOBAL.object_key)]
        + [("put_object", f"jobs/job-1/round-2/updates/{c}/update") for c in "abc"]
    )


async def test_round_one_grants_no_download(
    deps: Deps, started: Callable[..., RoundStarted], presigner: FakePresigner
) -> None:
    bus = InMemoryBus()

    await run(bus, deps, started(clients=("a",)))

    [grant] = assigned(bus).values()
    assert grant.global_model_url is None
    assert [op for op, _, _ in presigner.signed] == ["put_object"]


async def test_a_restarted_round_grants_again_and_a_redelivery_grants_new_urls(
    deps: Deps, started: Callable[..., RoundStarted], clock: ManualClock
) -> None:
    first = started(clients=("a", "b"))
    retry = started(clients=("b", "c"), time=T0 + timedelta(seconds=40), deadline_s=60)

    opened = await on_round_started(first, deps=deps)
    clock.advance(30)
    redelivered = await on_round_started(first, deps=deps)  # the same event once more
    restarted = await on_round_started(retry, deps=deps)

    def grants(events: list[Event]) -> list[tuple[str, str, datetime]]:
        return [(e.client_id, e.started_event_id, e.urls_expire_at) for e in events
                if isinstance(e, RoundAssigned)]  # fmt: skip

    until = T0 + timedelta(seconds=60 + 120)
    assert grants(opened) == [("a", first.event_id, until), ("b", first.event_id, until)]
    # Signed again, still ending at the deadline plus grace; the trainer answers this attempt
    # from its log if it already trained it.
    assert grants(redelivered) == grants(opened)
    until = T0 + timedelta(seconds=40 + 60 + 120)
    assert grants(restarted) == [("b", retry.event_id, until), ("c", retry.event_id, until)]


async def test_clients_that_already_reported_get_no_grant_and_an_aggregated_round_none(
    deps: Deps, started: Callable[..., RoundStarted], submit: Callable[..., Any]
) -> None:
    bus = InMemoryBus()
    event = started(clients=("a", "b"), min_clients=1)
    await run(bus, deps, event, await submit("a", delta(1.0)))
    assert sorted(assigned(bus)) == ["a", "b"]

    again = InMemoryBus()
    await run(again, deps, await submit("b", delta(1.0)), event)  # round now aggregated

    assert assigned(again) == {}


async def test_without_a_presigner_no_assignment_is_sent(
    artifacts: InMemoryArtifactStore, clock: ManualClock, started: Callable[..., RoundStarted]
) -> None:
    bus = InMemoryBus()
    plain = Deps(store=FakeRoundStore(), artifacts=artifacts, models=FakeModels(), clock=clock)

    await run(bus, plain, started())

    assert assigned(bus) == {}


def test_a_client_id_that_cannot_name_a_topic_gets_no_grant(
    started: Callable[..., RoundStarted],
) -> None:
    event = started(clients=("ok", "dlq", "a/b", ""))

    out = assignments(event, event.selected_clients, presigner=FakePresigner(), now=T0,
                      grace_s=0)  # fmt: skip

    assert [a.client_id for a in out] == ["ok"]


@pytest.mark.parametrize(
    ("deadline_s", "grace_s", "expected"),
    [(60, 300, 360), (-1000, 300, 1), (0, 0, 1), (30 * 24 * 3600, 0, MAX_EXPIRY_S), (0.2, 0, 1)],
)
def test_urls_live_until_the_deadline_plus_grace_within_sigv4_limits(
    deadline_s: float, grace_s: float, expected: int
) -> None:
    deadline = T0 + timedelta(seconds=deadline_s)

    assert grant_expiry_s(deadline=deadline, now=T0, grace_s=grace_s) == expected


def test_urls_expire_where_the_signature_says(started: Callable[..., RoundStarted]) -> None:
    event = started(deadline_s=90)

    [grant] = assignments(event, ["a"], presigner=FakePresigner(), now=T0, grace_s=10)

    expires = int(parse_qs(urlsplit(grant.update_url).query)["expires"][0])
    assert grant.urls_expire_at == T0 + timedelta(seconds=expires) == T0 + timedelta(seconds=100)
