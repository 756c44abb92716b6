"""The I/O steps of a round around the pure bookkeeping: judge an update, close a round.

Aggregation streams: the FedAvg family reads one update, adds it to the accumulator and
lets it go, so memory holds one model-sized sum whatever the number of clients, besides
the accepted updates kept from judging to combining within a fixed byte budget
(``Deps.updates``). Robust strategies (trimmed mean, median, Krum) need every update at
once by their nature.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence

from fedbus.aggregation import (
    ClientUpdate,
    DPFedAvgFixedClipping,
    FedAvg,
    Model,
    Strategy,
    validate_update,
)
from fedbus.errors import NonRetryableError
from fedbus.events import (
    BaseModelRef,
    Event,
    ModelRef,
    Phase,
    Progress,
    RoundCompleted,
    RoundStarted,
    child_traceparent,
)
from fedbus.storage import (
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    object_prefix,
    tensors_from_bytes,
    tensors_to_bytes,
    update_key,
)
from fedbus_aggregator.central_dp import (
    central_dp_shortfall,
    dp_usage,
    is_central_dp,
    wrap_for_central_dp,
)
from fedbus_aggregator.deps import Deps
from fedbus_aggregator.models import finite_metrics
from fedbus_aggregator.rounds import (
    Decision,
    RejectCode,
    RoundState,
    RoundStatus,
    UpdateRecord,
    weighted_train_metrics,
)
from fedbus_aggregator.strategies import build_strategy

__all__ = ["expire", "global_model", "judge", "object_prefix", "settle"]

log = logging.getLogger(__name__)


async def global_model(state: RoundState, deps: Deps) -> Model:
    """The model the round's clients trained from: stored, or round 1's built from the seed.

    Raises
    ------
    NonRetryableError
        When round 1's model cannot be built here (no spec for the dataset).
    """
    key = (state.job_id, state.round, state.version)
    cached = deps.globals.get(key)
    if cached is not None:
        return cached
    started = state.started
    if started.global_model is not None:
        # Usually the model this process wrote when it closed the previous round: kept then,
        # it is not downloaded again while every client of the new round uploads at once.
        model: Model | None = deps.globals.written(started.global_model)
        if model is None:
            model = await deps.artifacts.get_tensors(started.global_model)
    else:
        model = await asyncio.to_thread(
            deps.models.initial_weights,
            model=started.model,
            dataset=started.dataset,
            seed=started.seed,
            model_options=started.model_options,
            lora=started.lora,
        )
    if model is None:
        raise NonRetryableError(
            f"cannot build round {state.round}'s initial {started.model!r} model: no "
            f"--eval-data for dataset {started.dataset!r} gives its shape"
        )
    deps.globals.put(key, model)
    return model


ENVELOPE_MAX_OVERHEAD = 128
"""Most bytes the FBE2 envelope adds to a plaintext (header, key id, nonce, tag)."""


def max_update_bytes(reference: Model) -> int:
    """The largest plaintext an update of ``reference`` can be: its arrays (as float32 or
    wider, twice over for safety) plus a safetensors header of at most 1 MiB."""
    return 2 * sum(int(a.nbytes) for a in reference.values()) + (1 << 20)


async def _oversized(record: UpdateRecord, reference: Model, deps: Deps) -> str | None:
    """Why the update is too large to read, or None: checked before a byte is downloaded.

    A trainer's PUT URL does not bound what it uploads; without these checks the aggregator
    would read a multi-gigabyte object into memory to find out.
    """
    limit, claimed = max_update_bytes(reference), record.ref.size_bytes
    if claimed > limit:
        return f"the event claims {claimed} bytes; an update of this model has at most {limit}"
    stored = await deps.artifacts.stored_size(record.ref.object_key)
    if stored is not None and stored > claimed + ENVELOPE_MAX_OVERHEAD:
        return f"{stored} bytes are stored at {record.ref.object_key}; the event says {claimed}"
    return None


async def judge(
    record: UpdateRecord, *, state: RoundState, reference: Model, deps: Deps
) -> UpdateRecord:
    """Accept or reject one update: its object, hash, tensors and sample count."""
    # Only the key granted to this client for this round: a trainer can submit only an object
    # it wrote itself through its own presigned PUT.
    expected = update_key(state.job_id, state.round, record.client_id)
    if record.ref.object_key != expected:
        return record.rejected(
            RejectCode.NOT_GRANTED,
            f"object key {record.ref.object_key!r} is not the key granted, {expected}",
        )
    try:
        too_big = await _oversized(record, reference, deps)
        if too_big is not None:
            return record.rejected(RejectCode.OVERSIZED, too_big)
        tensors = await deps.artifacts.get_tensors(record.ref)
    except ArtifactNotFoundError as exc:
        return record.rejected(RejectCode.ARTIFACT_MISSING, str(exc))
    except ArtifactIntegrityError as exc:
        return record.rejected(RejectCode.INTEGRITY, str(exc))
    except NonRetryableError as exc:  # not safetensors
        return record.rejected(RejectCode.INVALID_UPDATE, str(exc))
    update = ClientUpdate(record.client_id, tensors, record.num_samples)
    verdict = validate_update(update, global_model=reference, max_norm=deps.max_update_norm)
    if not verdict.ok:
        return record.rejected(RejectCode.INVALID_UPDATE, verdict.reason or "invalid update")
    deps.updates.put(record.ref, tensors)  # combined from memory when the round closes
    return record.accepted()


async def settle(
    state: RoundState, deps: Deps, *, published: bool, may_expire: bool = True
) -> list[Event]:
    """Close the round if it is due: aggregate, or expire. Returns the events to emit.

    ``published`` is stored with the result: True when the caller's events are published
    before its input is committed (a redelivery re-emits them), False when the caller
    publishes and then calls ``mark_published``. ``may_expire=False`` leaves a round that
    would expire to the deadline task (its updates may still be queued behind it).
    """
    decision = state.decide(deps.clock())
    if decision is Decision.WAIT or (decision is Decision.EXPIRE and not may_expire):
        return []
    if decision is Decision.EXPIRE:
        return await expire(state, deps, state.shortfall())
    why = central_dp_shortfall(state)
    if why is not None:  # fail closed: noise for n clients is never applied to fewer
        if not may_expire and state.reported() != set(state.selected):
            return []
        return await expire(state, deps, why)
    try:
        return await _aggregate(state, deps, published=published)
    except NonRetryableError as exc:
        log.warning("round %s of %s cannot be aggregated: %s", state.round, state.job_id, exc)
        return await expire(state, deps, f"round {state.round}: aggregation failed: {exc}")


async def expire(state: RoundState, deps: Deps, why: str) -> list[Event]:
    """Close an open round without a model; a ``progress`` (phase failed) says why."""
    if not await deps.store.close(state, status=RoundStatus.EXPIRED):
        return []
    for record in state.updates.values():
        deps.updates.discard(record.ref)
    log.info("round %s of %s expired: %s", state.round, state.job_id, why)
    return [_progress(state, deps, Phase.FAILED, why)]


async def _aggregate(state: RoundState, deps: Deps, *, published: bool) -> list[Event]:
    accepted = state.accepted()
    progress: list[Event] = [
        _progress(state, deps, Phase.AGGREGATING, f"aggregating {len(accepted)} updates")
    ]
    reference = await global_model(state, deps)
    strategy = await _round_strategy(state, deps, num_updates=len(accepted))
    # Adaptive clipping moves C while combining: the round used the C it started with.
    clip = strategy.clipping_norm if isinstance(strategy, DPFedAvgFixedClipping) else None
    new_model = await _combine(strategy, reference, accepted, deps)
    progress.append(_progress(state, deps, Phase.EVALUATING, "evaluating the new global model"))
    global_ref, server_ref, scores = await _store_and_evaluate(new_model, strategy, state, deps)
    completed = RoundCompleted.create(
        source=deps.source,
        job_id=state.job_id,
        traceparent=child_traceparent(state.started.traceparent),
        round=state.round,
        global_model=global_ref,
        participants=[u.client_id for u in accepted],
        dropped=state.dropped(),
        total_samples=sum(u.num_samples for u in accepted),
        metrics=finite_metrics({**weighted_train_metrics(accepted), **scores}),
        dp=dp_usage(state.started, clipping_norm=clip) if clip is not None else None,
        base_model=await _base_model(state.started, deps),
    )
    closed = await deps.store.close(
        state, status=RoundStatus.AGGREGATED, result=completed, server_state=server_ref,
        published=published,
    )  # fmt: skip
    if not closed:  # someone else closed it first: emit what was stored, if anything
        stored = await deps.store.get(state.job_id, state.round)
        return [stored.result] if stored is not None and stored.result is not None else []
    log.info("round %s of %s aggregated from %d updates", state.round, state.job_id, len(accepted))
    return [*progress, completed]


async def _base_model(started: RoundStarted, deps: Deps) -> BaseModelRef | None:
    """With LoRA, the base weights the round's adapters apply to (built once per job here)."""
    if started.lora is None:
        return None
    return await asyncio.to_thread(
        deps.models.base_model,
        model=started.model,
        dataset=started.dataset,
        seed=started.seed,
        lora=started.lora,
        model_options=started.model_options,
    )


async def _round_strategy(state: RoundState, deps: Deps, *, num_updates: int) -> Strategy:
    """The job's strategy for this round: DP-wrapped if asked, with the previous round's state."""
    started = state.started
    strategy = build_strategy(started.strategy, num_updates=num_updates)
    if is_central_dp(started):  # settle() checked that every selected client is accepted
        strategy = wrap_for_central_dp(strategy, started)
    previous = await deps.store.previous_server_state(state.job_id, state.round)
    if previous is not None and _stateful(strategy):
        try:
            strategy.load_state(await deps.artifacts.get_tensors(previous))
        except NonRetryableError as exc:  # a different strategy's state: start afresh
            log.warning("server state %s not loaded: %s", previous.object_key, exc)
    return strategy


async def _store_and_evaluate(
    new_model: Model, strategy: Strategy, state: RoundState, deps: Deps
) -> tuple[ModelRef, ModelRef | None, dict[str, float]]:
    """Upload the new model and the strategy's state while the model is evaluated."""
    started = state.started
    # The evaluation (CPU, in a worker thread) runs while the new model and state upload.
    evaluation = asyncio.ensure_future(
        asyncio.to_thread(
            deps.models.evaluate,
            model=started.model,
            dataset=started.dataset,
            weights=new_model,
            model_options=started.model_options,
            lora=started.lora,
        )
    )
    try:
        server_ref = await _save_server_state(strategy, state, deps)
        written = tensors_to_bytes(new_model)
        global_ref = await deps.artifacts.put_bytes(
            written, prefix=object_prefix(state.job_id, state.round, "global")
        )
        # The next round judges against exactly what its clients download: these bytes.
        kept = tensors_from_bytes(written, source=global_ref.object_key)
        deps.globals.remember_written(global_ref, kept)
    except BaseException:
        evaluation.cancel()  # its thread finishes on its own; the scores are not needed
        raise
    return global_ref, server_ref, await evaluation


async def _combine(
    strategy: Strategy, reference: Model, accepted: Sequence[UpdateRecord], deps: Deps
) -> Model:
    if isinstance(strategy, FedAvg):
        # Fixed-point sum: the same bytes in any order, each update released once added.
        accumulator = strategy.accumulator()
        for record in accepted:
            delta = await _update_tensors(record, deps)
            update = ClientUpdate(record.client_id, delta, record.num_samples)
            await asyncio.to_thread(accumulator.add, update)
            del delta, update  # released before the next download
        return strategy.apply(global_model=reference, delta=accumulator.result())
    # One tensor order for every update, however its file listed them: robust strategies
    # flatten the updates, and sums over the flat rows follow that order.
    updates = [
        ClientUpdate(r.client_id, _by_name(await _update_tensors(r, deps)), r.num_samples)
        for r in accepted
    ]
    aggregate = strategy.aggregate
    if isinstance(strategy, DPFedAvgFixedClipping):  # exactly these clients, or an abort
        accounted = [r.client_id for r in accepted]
        aggregate = functools.partial(strategy.aggregate, accounted_clients=accounted)
    return await asyncio.to_thread(aggregate, global_model=reference, updates=updates)


async def _save_server_state(strategy: Strategy, state: RoundState, deps: Deps) -> ModelRef | None:
    arrays = strategy.state()
    if not arrays:
        return None
    prefix = object_prefix(state.job_id, state.round, "server-state")
    return await deps.artifacts.put_tensors(arrays, prefix=prefix)


async def _update_tensors(record: UpdateRecord, deps: Deps) -> Model:
    """The accepted update as judged, from memory, else downloaded and verified again."""
    kept = deps.updates.take(record.ref)
    return kept if kept is not None else await deps.artifacts.get_tensors(record.ref)


def _by_name(tensors: Model) -> Model:
    return dict(sorted(tensors.items()))


def _stateful(strategy: Strategy) -> bool:
    return type(strategy).load_state is not Strategy.load_state


def _progress(state: RoundState, deps: Deps, phase: Phase, message: str) -> Progress:
    return Progress.create(
        source=deps.source,
        job_id=state.job_id,
        traceparent=child_traceparent(state.started.traceparent),
        round=state.round,
        phase=phase,
        message=message,
    )
