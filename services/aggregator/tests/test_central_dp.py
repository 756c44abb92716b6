"""Central DP in the aggregator (docs/privacy.md, step 3): DP-FedAvg, fail closed, fresh noise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fedbus.bus import InMemoryBus
from fedbus.events import (
    DpUsage,
    Phase,
    PrivacyMode,
    PrivacySpec,
    Progress,
    RoundCompleted,
    RoundStarted,
    StrategySpec,
)
from fedbus.storage import InMemoryArtifactStore, tensors_to_bytes
from fedbus_aggregator import HANDLERS, Deps, RoundStatus, close_due_rounds

from .fakes import FakeModels, FakeRoundStore, ManualClock
from .fakes import constant_delta as delta


def make_deps(artifacts: InMemoryArtifactStore, clock: ManualClock) -> Deps:
    return Deps(store=FakeRoundStore(), artifacts=artifacts, models=FakeModels(), clock=clock)


def central(start: RoundStarted, *, z: float, clip: float = 1.0, **options: float) -> RoundStarted:
    privacy = PrivacySpec(mode=PrivacyMode.CENTRAL_DP, target_epsilon=4.0, delta=1e-5,
                          noise_multiplier=z, clipping_norm=clip)  # fmt: skip
    strategy = StrategySpec(options=options)
    return start.model_copy(update={"privacy": privacy, "strategy": strategy})


async def run(bus: InMemoryBus, deps: Deps, *events: Any) -> None:
    await bus.publish_many(events)
    await bus.drain(HANDLERS.bind(deps))


def completed(bus: InMemoryBus) -> list[RoundCompleted]:
    return [e for e in bus.events("round.completed") if isinstance(e, RoundCompleted)]


def failures(bus: InMemoryBus) -> list[str]:
    return [e.message for e in bus.events("progress")
            if isinstance(e, Progress) and e.phase is Phase.FAILED]  # fmt: skip


async def test_without_noise_the_round_is_the_mean_of_clipped_deltas_over_the_selected(
    artifacts: InMemoryArtifactStore, clock: ManualClock,
    started: Callable[..., RoundStarted], submit: Callable[..., Any],
) -> None:  # fmt: skip
    deps, bus = make_deps(artifacts, clock), InMemoryBus()
    start = central(started(), z=0.0, clip=1.0)
    # Nine coordinates of 1.0 (norm 3) and of 2.0 (norm 6): both clipped to norm 1.
    updates = [await submit(c, delta(v)) for c, v in (("a", 1.0), ("b", 2.0), ("c", 1.0))]

    await run(bus, deps, start, *updates)

    [done] = completed(bus)
    assert done.dp == DpUsage(noise_multiplier=0.0, sample_rate=1.0, steps=1, clipping_norm=1.0)
    initial = FakeModels().initial_weights(model="mlp", dataset="digits", seed=start.seed)
    assert initial is not None
    new = await artifacts.get_tensors(done.global_model)
    np.testing.assert_allclose(new["w"], initial["w"] + 1 / 3, rtol=1e-5)
    np.testing.assert_allclose(new["b"], 1 / 3, rtol=1e-5)


async def test_noise_is_fresh_on_every_run_while_the_rest_of_the_round_is_the_same_bytes(
    artifacts: InMemoryArtifactStore, clock: ManualClock,
    started: Callable[..., RoundStarted], submit: Callable[..., Any],
) -> None:  # fmt: skip
    # Same job, seed, round and updates: the noise must not follow from what the job's
    # submitter knows (the seed), or they could subtract it.
    updates = [await submit(c, delta(0.1)) for c in ("a", "b", "c")]

    async def model_of(z: float) -> dict[str, np.ndarray]:
        bus = InMemoryBus()
        await run(bus, make_deps(artifacts, clock), central(started(), z=z, clip=0.5), *updates)
        [done] = completed(bus)
        assert done.dp == DpUsage(noise_multiplier=z, sample_rate=1.0, steps=1, clipping_norm=0.5)
        return await artifacts.get_tensors(done.global_model)

    noisy = [await model_of(1.2), await model_of(1.2)]
    plain = [await model_of(0.0), await model_of(0.0)]

    assert not np.array_equal(noisy[0]["w"], noisy[1]["w"])
    assert not np.array_equal(noisy[0]["b"], noisy[1]["b"])
    assert tensors_to_bytes(plain[0]) == tensors_to_bytes(plain[1])
    np.testing.assert_allclose(plain[0]["b"], 0.1, rtol=1e-6)  # norm 0.3 < 0.5: unclipped
    assert not np.allclose(noisy[0]["b"], 0.1)  # noise was added


async def test_a_missing_client_at_the_deadline_aborts_the_round_without_a_model(
    artifacts: InMemoryArtifactStore, clock: ManualClock,
    started: Callable[..., RoundStarted], submit: Callable[..., Any],
) -> None:  # fmt: skip
    deps, bus = make_deps(artifacts, clock), InMemoryBus()
    start = central(started(min_clients=2, deadline_s=30), z=1.0)
    await run(bus, deps, start, await submit("a", delta(0.1)), await submit("b", delta(0.1)))

    clock.advance(31)
    await close_due_rounds(deps=deps, publisher=bus)

    assert completed(bus) == []
    [why] = failures(bus)
    assert "central DP aborted" in why
    assert "'c'" in why
    state = await deps.store.get("job-1", 1)
    assert state is not None
    assert state.status is RoundStatus.EXPIRED


async def test_a_rejected_update_aborts_the_round_once_everyone_reported(
    artifacts: InMemoryArtifactStore, clock: ManualClock,
    started: Callable[..., RoundStarted], submit: Callable[..., Any],
) -> None:  # fmt: skip
    deps, bus = make_deps(artifacts, clock), InMemoryBus()
    bad = delta(0.1)
    bad["w"][0, 0] = np.nan
    updates = [await submit("a", delta(0.1)), await submit("b", delta(0.1)),
               await submit("c", bad)]  # fmt: skip

    await run(bus, deps, central(started(min_clients=1), z=1.0), *updates)

    assert completed(bus) == []
    [why] = failures(bus)
    assert "['c']" in why


async def test_adaptive_clipping_reports_the_norm_it_used_and_moves_it_for_the_next_round(
    artifacts: InMemoryArtifactStore, clock: ManualClock,
    started: Callable[..., RoundStarted], submit: Callable[..., Any],
) -> None:  # fmt: skip
    deps, bus = make_deps(artifacts, clock), InMemoryBus()
    start = central(started(), z=1.0, clip=0.5, adaptive_clipping=1)
    # Every update (norm 3) is clipped: C grows for the next round.
    await run(bus, deps, start, *[await submit(c, delta(1.0)) for c in ("a", "b", "c")])

    [done] = completed(bus)
    assert done.dp is not None
    assert done.dp.clipping_norm == 0.5
    state = await deps.store.get("job-1", 1)
    assert state is not None
    assert state.server_state is not None
    moved = await artifacts.get_tensors(state.server_state)
    assert float(moved["dp/clipping_norm"][0]) > 0.5
