"""Accepted updates are combined as judged, without a second download; evaluation overlaps
the upload of the new global model."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from fedbus.aggregation import Model, NamedArrays
from fedbus.bus import InMemoryBus
from fedbus.events import (
    ModelRef,
    Progress,
    RoundCompleted,
    RoundStarted,
    Strategy,
    StrategySpec,
    UpdateSubmitted,
)
from fedbus.storage import InMemoryArtifactStore, tensors_to_bytes, update_key
from fedbus_aggregator import HANDLERS, Deps, UpdateCache, close_due_rounds

from .fakes import CountingStore, FakeModels, FakeRoundStore, ManualClock
from .fakes import constant_delta as delta


def _ref(key: str) -> ModelRef:
    return ModelRef(object_key=key, size_bytes=1, sha256=key[-1] * 64)


def _arrays(n: int) -> Model:
    return {"w": np.zeros(n, dtype=np.float32)}  # 4 * n bytes


def test_cache_keeps_until_taken_and_makes_arrays_read_only() -> None:
    cache = UpdateCache(max_bytes=100)
    tensors = _arrays(5)

    cache.put(_ref("k/a"), tensors)

    assert cache.nbytes == 20
    with pytest.raises(ValueError, match="read-only"):
        tensors["w"][0] = 1.0
    assert cache.take(_ref("k/a")) is tensors
    assert cache.take(_ref("k/a")) is None
    assert cache.nbytes == 0


def test_cache_drops_the_oldest_beyond_its_budget_and_never_holds_oversize() -> None:
    cache = UpdateCache(max_bytes=100)
    for key in ("k/a", "k/b", "k/c"):
        cache.put(_ref(key), _arrays(10))  # 40 bytes each

    cache.put(_ref("k/d"), _arrays(30))  # 120 bytes: never kept

    assert cache.take(_ref("k/a")) is None
    assert cache.take(_ref("k/b")) is not None
    assert cache.take(_ref("k/c")) is not None
    assert cache.take(_ref("k/d")) is None
    assert cache.nbytes == 0


def test_cache_keys_on_the_hash_too() -> None:
    cache = UpdateCache()
    cache.put(_ref("k/a"), _arrays(1))

    other = ModelRef(object_key="k/a", size_bytes=1, sha256="b" * 64)

    assert cache.take(other) is None
    assert cache.take(_ref("k/a")) is not None


def test_a_zero_budget_keeps_nothing() -> None:
    cache = UpdateCache(max_bytes=0)
    cache.put(_ref("k/a"), _arrays(1))
    assert cache.take(_ref("k/a")) is None


@pytest.fixture
def artifacts() -> CountingStore:
    """The conftest's ``submit`` puts updates here."""
    return CountingStore()


def _deps(artifacts: InMemoryArtifactStore, clock: ManualClock, **extra: Any) -> Deps:
    return Deps(
        store=FakeRoundStore(), artifacts=artifacts, models=FakeModels(), clock=clock, **extra
    )


@pytest.mark.parametrize("budget", [256 * 2**20, 0])
async def test_each_update_is_read_once_when_kept_twice_when_not(
    artifacts: CountingStore,
    clock: ManualClock,
    started: Callable[..., RoundStarted],
    submit: Callable[..., Any],
    budget: int,
) -> None:
    deps = _deps(artifacts, clock, updates=UpdateCache(budget))
    bus = InMemoryBus()
    updates = [
        await submit("a", delta(1.0), num_samples=10),
        await submit("b", delta(2.0), num_samples=10),
        await submit("c", delta(4.0), num_samples=20),
    ]

    await bus.publish_many([started(), *updates])
    await bus.drain(HANDLERS.bind(deps))

    [done] = [e for e in bus.events("round.completed") if isinstance(e, RoundCompleted)]
    reads = {k.split("/")[4]: n for k, n in artifacts.reads.items() if "/updates/" in k}
    assert reads == dict.fromkeys("abc", 1 if budget else 2)
    initial = FakeModels().initial_weights(model="mlp", dataset="digits", seed=7)
    assert initial is not None
    new = await artifacts.get_tensors(done.global_model)
    np.testing.assert_allclose(new["w"], initial["w"] + 2.75, rtol=1e-6)
    assert deps.updates.nbytes == 0  # all taken by the aggregation


async def test_a_robust_strategy_combines_the_kept_updates_too(
    artifacts: CountingStore,
    clock: ManualClock,
    started: Callable[..., RoundStarted],
    submit: Callable[..., Any],
) -> None:
    deps = _deps(artifacts, clock)
    bus = InMemoryBus()
    median = StrategySpec(name=Strategy.MEDIAN)
    updates = [await submit(c, delta(v)) for c, v in (("a", 1.0), ("b", 2.0), ("c", 9.0))]

    await bus.publish_many([started(strategy=median), *updates])
    await bus.drain(HANDLERS.bind(deps))

    [done] = [e for e in bus.events("round.completed") if isinstance(e, RoundCompleted)]
    reads = [n for k, n in artifacts.reads.items() if "/updates/" in k]
    assert reads == [1, 1, 1]
    initial = FakeModels().initial_weights(model="mlp", dataset="digits", seed=7)
    assert initial is not None
    new = await artifacts.get_tensors(done.global_model)
    np.testing.assert_allclose(new["w"], initial["w"] + 2.0, rtol=1e-6)


async def test_an_update_not_kept_is_verified_again_when_combined(
    artifacts: InMemoryArtifactStore,
    clock: ManualClock,
    started: Callable[..., RoundStarted],
    submit: Callable[..., Any],
) -> None:
    deps = _deps(artifacts, clock, updates=UpdateCache(0))
    bus = InMemoryBus()
    a = await submit("a", delta(1.0))
    await bus.publish_many([started(clients=("a", "b"), min_clients=2), a])
    await bus.drain(HANDLERS.bind(deps))
    key = a.update.object_key
    artifacts.objects[key] = artifacts.objects[key][:-1] + b"\x00"  # changed after judging

    await bus.publish(await submit("b", delta(1.0)))
    await bus.drain(HANDLERS.bind(deps))

    assert bus.events("round.completed") == []
    failed = [e for e in bus.events("progress") if isinstance(e, Progress)][-1]
    assert "aggregation failed" in failed.message
    assert "SHA-256" in failed.message


async def test_an_expired_round_lets_its_kept_updates_go(
    artifacts: InMemoryArtifactStore,
    clock: ManualClock,
    started: Callable[..., RoundStarted],
    submit: Callable[..., Any],
) -> None:
    deps = _deps(artifacts, clock)
    bus = InMemoryBus()
    await bus.publish_many([started(deadline_s=30, min_clients=2), await submit("a", delta(1.0))])
    await bus.drain(HANDLERS.bind(deps))
    assert deps.updates.nbytes > 0

    clock.advance(31)
    await close_due_rounds(deps=deps, publisher=bus)

    assert deps.updates.nbytes == 0


class GatedStore(InMemoryArtifactStore):
    """Holds the upload of a global model until the evaluation has started."""

    def __init__(self, evaluating: threading.Event) -> None:
        super().__init__()
        self.evaluating = evaluating
        self.overlapped: bool | None = None

    async def _put(self, key: str, body: bytes, *, sha256: str) -> None:
        if "/global/" in key:
            self.overlapped = await asyncio.to_thread(self.evaluating.wait, 10)
        await super()._put(key, body, sha256=sha256)


class SignallingModels(FakeModels):
    def __init__(self, evaluating: threading.Event) -> None:
        super().__init__()
        self.evaluating = evaluating

    def evaluate(
        self,
        *,
        model: str,
        dataset: str,
        weights: NamedArrays,
        model_options: Any = None,
        lora: Any = None,
    ) -> dict[str, float]:
        self.evaluating.set()
        return super().evaluate(
            model=model, dataset=dataset, weights=weights, model_options=model_options, lora=lora
        )


async def test_evaluation_runs_while_the_new_global_model_uploads(
    clock: ManualClock, started: Callable[..., RoundStarted]
) -> None:
    evaluating = threading.Event()
    store = GatedStore(evaluating)
    deps = Deps(
        store=FakeRoundStore(),
        artifacts=store,
        models=SignallingModels(evaluating),
        clock=clock,
    )
    ref = await store.put_at(tensors_to_bytes(delta(1.0)), key=update_key("job-1", 1, "a"))
    update = UpdateSubmitted.create(
        source="trainer", job_id="job-1", round=1, client_id="a", update=ref, num_samples=5
    )
    bus = InMemoryBus()
    await bus.publish_many([started(clients=("a",), min_clients=1), update])
    await bus.drain(HANDLERS.bind(deps))

    assert store.overlapped is True
    [done] = [e for e in bus.events("round.completed") if isinstance(e, RoundCompleted)]
    assert done.metrics["accuracy"] == 0.75
    assert done.global_model.object_key in store.objects
