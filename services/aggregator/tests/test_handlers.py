"""Handlers over an in-memory bus, artifact store and round store (no Kafka, no MinIO)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from hashlib import sha256
from typing import Any

import numpy as np
import pytest

from fedbus.aggregation import FedAvgM, Model
from fedbus.bus import InMemoryBus
from fedbus.events import (
    BaseModelRef,
    DeclineReason,
    LoraSpec,
    ModelRef,
    Phase,
    Progress,
    RoundCompleted,
    RoundDeclined,
    RoundStarted,
    Strategy,
    StrategySpec,
    UpdateSubmitted,
)
from fedbus.storage import InMemoryArtifactStore
from fedbus_aggregator import HANDLERS, Deps, RoundStatus, close_due_rounds

from .fakes import T0, CountingStore, FakeModels, FakeRoundStore, ManualClock
from .fakes import constant_delta as delta


@pytest.fixture
def models() -> FakeModels:
    return FakeModels()


@pytest.fixture
def store() -> FakeRoundStore:
    return FakeRoundStore()


@pytest.fixture
def deps(
    store: FakeRoundStore,
    artifacts: InMemoryArtifactStore,
    models: FakeModels,
    clock: ManualClock,
) -> Deps:
    return Deps(store=store, artifacts=artifacts, models=models, clock=clock)


async def run(bus: InMemoryBus, deps: Deps, *events: Any) -> None:
    await bus.publish_many(events)
    await bus.drain(HANDLERS.bind(deps))


def completed(bus: InMemoryBus) -> list[RoundCompleted]:
    return [e for e in bus.events("round.completed") if isinstance(e, RoundCompleted)]


async def test_round_one_aggregates_weighted_deltas_onto_the_seeded_model(
    deps: Deps,
    artifacts: InMemoryArtifactStore,
    models: FakeModels,
    started: Callable[..., RoundStarted],
    submit: Callable[..., Any],
) -> None:
    bus = InMemoryBus()
    start = started()
    updates = [
        await submit("a", delta(1.0), num_samples=10, metrics={"loss": 1.0}),
        await submit("b", delta(2.0), num_samples=10, metrics={"loss": 2.0}),
        await submit("c", delta(4.0), num_samples=20, metrics={"loss": 4.0}),
    ]

    await run(bus, deps, start, *updates)

    [done] = completed(bus)
    initial = models.initial_weights(model="mlp", dataset="digits", seed=start.seed)
    assert initial is not None
    new = await artifacts.get_tensors(done.global_model)  # verifies size and SHA-256
    np.testing.assert_allclose(new["w"], initial["w"] + 2.75, rtol=1e-6)
    assert done.global_model.object_key.startswith("jobs/job-1/round-1/global/")
    assert done.participants == ["a", "b", "c"]
    assert done.dropped == []
    assert done.total_samples == 40
    assert done.metrics["accuracy"] == 0.75
    assert done.metrics["train_loss"] == pytest.approx(2.75)
    assert done.traceparent.split("-")[1] == start.traceparent.split("-")[1]
    phases = [e.phase for e in bus.events("progress") if isinstance(e, Progress)]
    assert phases == [Phase.AGGREGATING, Phase.EVALUATING]


async def test_the_model_is_built_and_evaluated_with_the_jobs_model_options(
    deps: Deps,
    models: FakeModels,
    started: Callable[..., RoundStarted],
    submit: Callable[..., Any],
) -> None:
    bus = InMemoryBus()
    options = {"hidden": [32, 16], "dropout": 0.25}
    start = started(clients=("a", "b"), model_options=options)
    updates = [await submit(c, delta(1.0), num_samples=10) for c in ("a", "b")]

    await run(bus, deps, start, *updates)

    assert completed(bus)
    assert models.options == [("initial_weights", options), ("evaluate", options)]


async def test_a_lora_round_names_its_base_model_and_builds_with_the_adapters(
    deps: Deps,
    models: FakeModels,
    started: Callable[..., RoundStarted],
    submit: Callable[..., Any],
) -> None:
    bus = InMemoryBus()
    lora = LoraSpec(r=4, target_modules=["fc1"])
    updates = [await submit(c, delta(1.0), num_samples=10) for c in ("a", "b")]

    await run(bus, deps, started(clients=("a", "b"), lora=lora), *updates)

    [done] = completed(bus)
    assert done.base_model == BaseModelRef(name="mlp", sha256=sha256(b"mlp").hexdigest())
    assert models.loras == [("initial_weights", lora), ("evaluate", lora)]


async def test_a_round_without_lora_names_no_base_model(
    deps: Deps, started: Callable[..., RoundStarted], submit: Callable[..., Any]
) -> None:
    bus = InMemoryBus()
    updates = [await submit(c, delta(1.0), num_samples=10) for c in ("a", "b")]

    await run(bus, deps, started(clients=("a", "b")), *updates)

    assert [c.base_model for c in completed(bus)] == [None]


async def test_bad_updates_are_rejected_with_reasons_and_the_round_still_completes(
    deps: Deps, started: Callable[..., RoundStarted], submit: Callable[..., Any]
) -> None:
    bus = InMemoryBus()
    nan = delta(1.0)
    nan["w"][0, 0] = np.nan
    updates = [
        await submit("a", delta(1.0)),
        await submit("b", nan),
        await submit("c", delta(1.0, shape_w=(3, 2))),
    ]

    await run(bus, deps, started(min_clients=1), *updates)

    [done] = completed(bus)
    assert done.participants == ["a"]
    reasons = {d.client_id: (d.code, d.message) for d in done.dropped}
    assert reasons["b"][0] == "invalid_update"
    assert "NaN" in reasons["b"][1]
    assert "shape" in reasons["c"][1]


async def test_hash_mismatch_and_missing_object_are_rejected(
    deps: Deps,
    clock: ManualClock,
    started: Callable[..., RoundStarted],
    submit: Callable[..., Any],
    artifacts: InMemoryArtifactStore,
) -> None:
    bus = InMemoryBus()
    good = await submit("a", delta(1.0))
    tampered = await submit("b", delta(1.0))
    tampered = tampered.model_copy(
        update={"update": tampered.update.model_copy(update={"sha256": "f" * 64})}
    )
    missing = await submit("c", delta(1.0))
    del artifacts.objects[missing.update.object_key]  # announced, never written

    await run(bus, deps, started(min_clients=1, deadline_s=30), good, tampered, missing)
    assert completed(bus) == []  # b and c may still send the event of what they wrote
    clock.advance(31)
    await close_due_rounds(deps=deps, publisher=bus)

    [done] = completed(bus)
    codes = {d.client_id: d.code for d in done.dropped}
    assert codes == {"b": "integrity", "c": "artifact_missing"}


@pytest.mark.parametrize("forgery", ["other_hash", "before_upload", "other_key"])
async def test_an_update_forged_in_another_clients_name_does_not_shut_it_out(
    deps: Deps,
    started: Callable[..., RoundStarted],
    submit: Callable[..., Any],
    artifacts: InMemoryArtifactStore,
    forgery: str,
) -> None:
    """Any trainer may publish an ``update.submitted`` naming client b. It cannot know b's
    SHA-256 (no trainer reads update.submitted) nor write b's key, so the forgery is refused;
    b's own event, arriving after it, is still judged and aggregated."""
    bus = InMemoryBus()
    genuine = await submit("b", delta(2.0))
    stored = artifacts.objects.pop(genuine.update.object_key)
    wrong = "f" * 64 if forgery == "other_hash" else genuine.update.sha256
    claimed = genuine.update.model_copy(update={"sha256": wrong})
    if forgery == "other_key":  # the forger's own object, announced as b's
        mine = await submit("x", delta(9.0))
        claimed = mine.update
    forged = UpdateSubmitted.create(
        source="trainer", job_id="job-1", round=1, client_id="b", update=claimed,
        num_samples=10_000,
    )  # fmt: skip
    if forgery != "before_upload":
        artifacts.objects[genuine.update.object_key] = stored  # b uploaded; forger guessed
    await run(bus, deps, started(min_clients=2), await submit("a", delta(1.0)), forged)
    assert completed(bus) == []
    artifacts.objects[genuine.update.object_key] = stored

    await run(bus, deps, genuine, await submit("c", delta(1.0)))

    [done] = completed(bus)
    assert done.participants == ["a", "b", "c"]
    assert done.total_samples == 30  # b's own sample count, not the forger's 10,000


@pytest.mark.parametrize(
    "key",
    [
        "jobs/job-1/round-1/updates/b/update",  # another client's granted object
        "jobs/job-1/round-1/updates/a/" + "0" * 64,  # under its prefix, but not the grant
        "jobs/job-1/round-2/updates/a/update",  # its key of another round
        "jobs/job-1/round-1/global/x",
    ],
)
async def test_an_update_naming_any_object_but_the_key_granted_to_it_is_refused(
    deps: Deps,
    clock: ManualClock,
    started: Callable[..., RoundStarted],
    submit: Callable[..., Any],
    artifacts: InMemoryArtifactStore,
    key: str,
) -> None:
    bus = InMemoryBus()
    other = await submit("b", delta(1.0))
    own = await submit("a", delta(1.0))
    # A real object with the right hash sits at ``key``: only the key itself is wrong.
    artifacts.objects[key] = artifacts.objects[own.update.object_key]
    forged = own.model_copy(update={"update": own.update.model_copy(update={"object_key": key})})

    start = started(clients=("a", "b"), min_clients=1, deadline_s=30)
    await run(bus, deps, start, other, forged)
    assert completed(bus) == []  # a may still announce what it wrote at its key
    clock.advance(31)
    await close_due_rounds(deps=deps, publisher=bus)

    [done] = completed(bus)
    assert done.participants == ["b"]
    [dropped] = done.dropped
    assert (dropped.client_id, dropped.code) == ("a", "not_granted")
    assert "jobs/job-1/round-1/updates/a/update" in dropped.message


async def test_update_from_an_unselected_client_is_rejected_and_not_counted(
    deps: Deps,
    store: FakeRoundStore,
    started: Callable[..., RoundStarted],
    submit: Callable[..., Any],
) -> None:
    bus = InMemoryBus()

    await run(bus, deps, started(), await submit("mallory", delta(9.0)))

    updates = await store.updates("job-1", 1)
    assert updates["mallory"].code is not None
    assert updates["mallory"].code.value == "not_selected"
    assert completed(bus) == []


async def test_duplicate_update_is_ignored(
    deps: Deps,
    artifacts: InMemoryArtifactStore,
    started: Callable[..., RoundStarted],
    submit: Callable[..., Any],
) -> None:
    bus = InMemoryBus()
    first = await submit("a", delta(1.0))
    # A second announcement by the same client (its one granted key, other claims): ignored.
    second = UpdateSubmitted.create(
        source="trainer", job_id="job-1", round=1, client_id="a", update=first.update,
        num_samples=1000,
    )  # fmt: skip

    await run(
        bus,
        deps,
        started(),
        first,
        second,
        await submit("b", delta(1.0)),
        await submit("c", delta(1.0)),
    )

    [done] = completed(bus)
    assert done.participants == ["a", "b", "c"]
    assert done.total_samples == 30


async def test_deadline_aggregates_with_the_straggler_dropped_then_publishes_once(
    deps: Deps, clock: ManualClock, started: Callable[..., RoundStarted], submit: Callable[..., Any]
) -> None:
    bus = InMemoryBus()
    await run(bus, deps, started(deadline_s=30), await submit("a", delta(1.0)))
    await run(bus, deps, await submit("b", delta(1.0)))
    assert await close_due_rounds(deps=deps, publisher=bus) == 0

    clock.advance(31)
    published = await close_due_rounds(deps=deps, publisher=bus)
    again = await close_due_rounds(deps=deps, publisher=bus)

    [done] = completed(bus)
    assert published == 3  # aggregating, evaluating, round.completed
    assert again == 0
    assert done.participants == ["a", "b"]
    assert [(d.client_id, d.code) for d in done.dropped] == [("c", "deadline")]


async def test_deadline_with_too_few_updates_expires_the_round(
    deps: Deps,
    clock: ManualClock,
    store: FakeRoundStore,
    started: Callable[..., RoundStarted],
    submit: Callable[..., Any],
) -> None:
    bus = InMemoryBus()
    await run(bus, deps, started(deadline_s=30, min_clients=2), await submit("a", delta(1.0)))

    clock.advance(31)
    await close_due_rounds(deps=deps, publisher=bus)

    state = await store.get("job-1", 1)
    assert state is not None
    assert state.status is RoundStatus.EXPIRED
    assert completed(bus) == []
    [failed] = [e for e in bus.events("progress") if isinstance(e, Progress)]
    assert failed.phase is Phase.FAILED
    assert "1 of min 2" in failed.message


async def test_retry_of_an_expired_round_opens_it_again(
    deps: Deps, clock: ManualClock, started: Callable[..., RoundStarted], submit: Callable[..., Any]
) -> None:
    bus = InMemoryBus()
    first = started(deadline_s=30, min_clients=2)
    await run(bus, deps, first, await submit("a", delta(1.0)))
    clock.advance(31)
    await close_due_rounds(deps=deps, publisher=bus)

    retry = started(clients=("a", "d"), min_clients=2, time=clock.now, deadline_s=30)
    await run(bus, deps, retry, await submit("d", delta(3.0)))

    [done] = completed(bus)
    assert done.participants == ["a", "d"]


async def test_redelivered_update_re_emits_the_same_round_completed(
    deps: Deps, started: Callable[..., RoundStarted], submit: Callable[..., Any]
) -> None:
    bus = InMemoryBus()
    last = await submit("c", delta(1.0))
    await run(
        bus, deps, started(), await submit("a", delta(1.0)), await submit("b", delta(1.0)), last
    )

    await run(bus, deps, last)
    await run(bus, deps, started())  # a start for an aggregated round re-emits too

    events = completed(bus)
    assert len(events) == 3
    assert {e.event_id for e in events} == {events[0].event_id}
    assert events[0] == events[1] == events[2]


async def test_update_arriving_before_its_round_started_is_kept_and_judged(
    deps: Deps, started: Callable[..., RoundStarted], submit: Callable[..., Any]
) -> None:
    bus = InMemoryBus()
    early = [await submit(c, delta(1.0)) for c in ("a", "b", "c")]

    await run(bus, deps, *early)
    assert completed(bus) == []
    await run(bus, deps, started())

    [done] = completed(bus)
    assert done.participants == ["a", "b", "c"]


async def test_round_one_needs_a_known_dataset_shape(
    deps: Deps, started: Callable[..., RoundStarted], submit: Callable[..., Any]
) -> None:
    bus = InMemoryBus()

    await run(bus, deps, started(dataset="unknown", clients=("a",), min_clients=1))
    await run(bus, deps, await submit("a", delta(1.0)))

    assert completed(bus) == []
    failed = [e for e in bus.events("progress") if isinstance(e, Progress)]
    assert failed
    assert "no --eval-data" in failed[-1].message


async def test_server_momentum_continues_across_rounds_and_a_restart(
    store: FakeRoundStore,
    artifacts: InMemoryArtifactStore,
    models: FakeModels,
    started: Callable[..., RoundStarted],
    submit: Callable[..., Any],
) -> None:
    spec = StrategySpec(name=Strategy.FEDAVGM, options={"server_momentum": 0.5})
    bus = InMemoryBus()
    await run(
        bus,
        Deps(store=store, artifacts=artifacts, models=models),
        started(clients=("a",), min_clients=1, strategy=spec),
        await submit("a", delta(1.0)),
    )
    [first] = completed(bus)
    restarted = Deps(store=store, artifacts=artifacts, models=models)  # nothing in memory

    await run(
        bus,
        restarted,
        started(
            round_=2, clients=("a",), min_clients=1, strategy=spec, global_model=first.global_model
        ),
        await submit("a", delta(1.0), round_=2),
    )

    second = completed(bus)[-1]
    initial = models.initial_weights(model="mlp", dataset="digits", seed=7)
    assert initial is not None
    expected = FedAvgM(momentum=0.5)
    model = expected.apply(global_model=initial, delta=delta(1.0))
    model = expected.apply(global_model=model, delta=delta(1.0))
    got = await artifacts.get_tensors(second.global_model)
    np.testing.assert_allclose(got["w"], model["w"], rtol=1e-6)  # 1 + 1.5, not 1 + 1
    state = await store.get("job-1", 2)
    assert state is not None
    assert state.server_state is not None
    assert state.server_state.object_key.startswith("jobs/job-1/round-2/server-state/")


async def test_robust_strategy_that_cannot_run_expires_the_round(
    deps: Deps, started: Callable[..., RoundStarted], submit: Callable[..., Any]
) -> None:
    bus = InMemoryBus()
    krum = StrategySpec(name=Strategy.KRUM, options={"num_byzantine": 1})  # needs >= 5 updates

    await run(
        bus,
        deps,
        started(strategy=krum),
        *[await submit(c, delta(1.0)) for c in ("a", "b", "c")],
    )

    assert completed(bus) == []
    failed = [e for e in bus.events("progress") if isinstance(e, Progress)]
    assert failed[-1].phase is Phase.FAILED


async def test_the_next_round_uses_the_global_model_written_here_without_downloading_it(
    deps: Deps,
    artifacts: CountingStore,
    models: FakeModels,
    started: Callable[..., RoundStarted],
    submit: Callable[..., Any],
) -> None:
    bus = InMemoryBus()

    await run(bus, deps, started(clients=("a",), min_clients=1), await submit("a", delta(1.0)))
    [first] = completed(bus)
    second_start = started(round_=2, clients=("a",), min_clients=1, global_model=first.global_model)
    await run(bus, deps, second_start, await submit("a", delta(1.0), round_=2))

    second = completed(bus)[-1]
    assert artifacts.reads.get(first.global_model.object_key, 0) == 0  # kept, not downloaded
    got = await artifacts.get_tensors(second.global_model)
    initial = models.initial_weights(model="mlp", dataset="digits", seed=7)
    assert initial is not None
    np.testing.assert_allclose(got["w"], initial["w"] + 2.0, rtol=1e-6)  # built on round 1's


async def test_round_started_loads_a_global_model_it_did_not_write(
    deps: Deps, artifacts: InMemoryArtifactStore, started: Callable[..., RoundStarted]
) -> None:
    model = {"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}
    ref = await artifacts.put_tensors(model, prefix="jobs/job-1/round-1/global")
    bus = InMemoryBus()

    await run(bus, deps, started(round_=2, global_model=ref))

    cached = deps.globals.get(("job-1", 2, 1))
    assert cached is not None  # loaded at round start, before any update competes with it
    np.testing.assert_array_equal(cached["w"], model["w"])


async def test_a_missing_global_model_at_round_start_does_not_fail_the_start(
    deps: Deps, started: Callable[..., RoundStarted], submit: Callable[..., Any]
) -> None:
    gone = ModelRef(
        object_key="jobs/job-1/round-1/global/" + "0" * 64, size_bytes=4, sha256="0" * 64
    )
    bus = InMemoryBus()

    await run(bus, deps, started(round_=2, clients=("a",), min_clients=1, global_model=gone))

    state = await deps.store.get("job-1", 2)
    assert state is not None
    assert state.status is RoundStatus.OPEN  # the start stands; judging meets the error
    assert bus.events("progress") == []

    await run(bus, deps, await submit("a", delta(1.0), round_=2))

    [failed] = [e for e in bus.events("progress") if isinstance(e, Progress)]
    assert failed.phase is Phase.FAILED
    assert gone.object_key in failed.message


class BrokenModels(FakeModels):
    """A model source whose round-1 weights cannot be built (a bug, not a bad job)."""

    def initial_weights(
        self, *, model: str, dataset: str, seed: int, model_options: Any = None, lora: Any = None
    ) -> Model | None:
        raise RuntimeError("cannot build")


async def test_a_model_source_failing_at_round_start_leaves_the_round_open(
    store: FakeRoundStore,
    artifacts: InMemoryArtifactStore,
    clock: ManualClock,
    started: Callable[..., RoundStarted],
) -> None:
    deps = Deps(store=store, artifacts=artifacts, models=BrokenModels(), clock=clock)
    bus = InMemoryBus()

    await run(bus, deps, started())  # must not raise: the consumer would stop on it

    state = await store.get("job-1", 1)
    assert state is not None
    assert state.status is RoundStatus.OPEN


async def test_the_kept_global_model_is_what_was_stored_and_handed_over_once(
    deps: Deps,
    artifacts: InMemoryArtifactStore,
    started: Callable[..., RoundStarted],
    submit: Callable[..., Any],
) -> None:
    bus = InMemoryBus()
    await run(bus, deps, started(clients=("a",), min_clients=1), await submit("a", delta(1.0)))
    [done] = completed(bus)

    kept = deps.globals.written(done.global_model)

    assert kept is not None
    stored = await artifacts.get_tensors(done.global_model)
    assert {k: (v.shape, v.dtype) for k, v in kept.items()} == {
        k: (v.shape, v.dtype) for k, v in stored.items()
    }
    for name in stored:
        np.testing.assert_array_equal(kept[name], stored[name])
        assert not kept[name].flags.writeable
    assert deps.globals.written(done.global_model) is None  # handed over to its round


def declined(start: RoundStarted, client: str) -> RoundDeclined:
    return RoundDeclined.create(
        source="trainer", job_id=start.job_id, round=start.round, client_id=client,
        started_event_id=start.event_id,
        reasons=[DeclineReason(code="epsilon_too_large", message="asks 8.0, site allows 1.0")],
    )  # fmt: skip


async def test_a_declining_client_is_dropped_at_once_and_the_round_does_not_wait_for_it(
    deps: Deps, started: Callable[..., RoundStarted], submit: Callable[..., Any]
) -> None:
    bus = InMemoryBus()
    start = started(min_clients=2, deadline_s=3600)
    await run(bus, deps, start, await submit("a", delta(1.0)), declined(start, "b"))
    assert completed(bus) == []

    await run(bus, deps, await submit("c", delta(1.0)))  # the last one closes it, no deadline

    [done] = completed(bus)
    assert done.participants == ["a", "c"]
    [dropped] = done.dropped
    assert (dropped.client_id, dropped.code) == ("b", "declined")
    assert "epsilon_too_large" in dropped.message


async def test_a_decline_of_an_earlier_attempt_or_after_an_update_changes_nothing(
    deps: Deps, started: Callable[..., RoundStarted], submit: Callable[..., Any]
) -> None:
    bus = InMemoryBus()
    earlier = started(min_clients=2)
    start = started(min_clients=2, time=T0 + timedelta(seconds=5))  # the round restarted
    await run(bus, deps, earlier, start, await submit("a", delta(1.0)))
    await run(bus, deps, declined(earlier, "b"), declined(start, "a"))

    await run(bus, deps, await submit("b", delta(1.0)), await submit("c", delta(1.0)))

    [done] = completed(bus)
    assert done.participants == ["a", "b", "c"]


async def test_a_client_that_declined_an_earlier_attempt_takes_part_in_the_next(
    deps: Deps, started: Callable[..., RoundStarted], submit: Callable[..., Any]
) -> None:
    """A decline belongs to one attempt (a daily limit frees): the retry grants and judges it."""
    bus = InMemoryBus()
    first = started(clients=("a", "b"), min_clients=2)
    await run(bus, deps, first, declined(first, "b"))
    retry = started(clients=("a", "b"), min_clients=2, time=T0 + timedelta(seconds=5))
    await run(bus, deps, retry)
    await run(bus, deps, await submit("a", delta(1.0)), await submit("b", delta(1.0)))

    [done] = completed(bus)
    assert done.participants == ["a", "b"]


async def test_an_oversized_upload_is_refused_before_a_byte_of_it_is_read(
    deps: Deps,
    clock: ManualClock,
    started: Callable[..., RoundStarted],
    submit: Callable[..., Any],
    artifacts: CountingStore,
) -> None:
    """A PUT URL does not bound the upload: the size is checked with a HEAD first."""
    bus = InMemoryBus()
    b = await submit("b", delta(1.0))
    artifacts.objects[b.update.object_key] += b"\0" * 10_000_000  # far more than it claims
    huge = await submit("c", delta(1.0))
    claims_too_much = huge.model_copy(
        update={"update": huge.update.model_copy(update={"size_bytes": 1 << 40})}
    )

    start = started(min_clients=1, deadline_s=30)
    await run(bus, deps, start, await submit("a", delta(1.0)), b, claims_too_much)
    clock.advance(31)
    await close_due_rounds(deps=deps, publisher=bus)

    [done] = completed(bus)
    assert done.participants == ["a"]
    assert {d.client_id: d.code for d in done.dropped} == {"b": "oversized", "c": "oversized"}
    assert artifacts.reads.get(b.update.object_key, 0) == 0
    assert artifacts.reads.get(huge.update.object_key, 0) == 0
