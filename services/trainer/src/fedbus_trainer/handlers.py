"""Event handlers of the trainer and its routing table ``HANDLERS``.

One event is handled: ``round.assigned``, read from this trainer's own topic
``round.assigned.<client_id>``. The round is trained from the global model, downloaded
through the URL the aggregator granted (or, in round 1, from the initial weights every
process derives from the model name and seed); the delta is encrypted, uploaded through
the granted PUT URL to the granted key, and announced with ``update.submitted``. Progress
is published live while training runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fedbus.bus import Routes, route
from fedbus.errors import NonRetryableError
from fedbus.events import Event, Phase, RoundAssigned, UpdateSubmitted, child_traceparent
from fedbus.storage import tensors_to_bytes
from fedbus.telemetry import log_context
from fedbus_executor import ExecutorError, TrainingResult, TrainingTask, initial_weights
from fedbus_trainer.datasets import LocalDataset
from fedbus_trainer.deps import Deps
from fedbus_trainer.memory import release_free_memory
from fedbus_trainer.progress import ProgressRelay, progress_event
from fedbus_trainer.tasks import (
    TaskConfigError,
    central_dp_norm,
    central_dp_usage,
    clip_for_central_dp,
    delta_arrays,
    local_dp_usage,
    lora_settings,
    training_task,
    update_metrics,
)

__all__ = ["HANDLERS", "on_round_assigned"]

log = logging.getLogger(__name__)


async def on_round_assigned(event: RoundAssigned, *, deps: Deps) -> list[Event]:
    """Train the round assigned to this client (another client's assignment is ignored).

    Returns ``update.submitted`` (and a closing ``progress``), the stored
    ``update.submitted`` again when the same ``round.started`` is assigned again (a
    redelivery, or the aggregator granting new URLs for it), ``round.declined`` when the site
    policy refuses the round, or a ``progress`` with phase ``failed`` when the round asks for
    something this client cannot do.
    """
    if event.client_id != deps.client_id:
        log.warning("ignoring an assignment for client %r", event.client_id)
        return []
    with log_context(job_id=event.job_id, round=event.round, client_id=deps.client_id):
        prior = deps.submitted.get(event.job_id, event.round, event.started_event_id)
        if prior is not None:
            log.info("round already submitted; sending the same update.submitted again")
            return [prior]
        held = deps.datasets.get(event.dataset)
        declined = deps.site.check(event, attempt_id=event.started_event_id,
                                   client_id=deps.client_id,
                                   num_samples=held.num_samples if held else 0)  # fmt: skip
        if declined is not None:  # the site policy refuses: say so instead of training
            return [declined]
        deps.activity.begin(event.job_id)
        try:
            return await _train_round(event, deps)
        finally:
            deps.activity.end(event.job_id)


async def _train_round(event: RoundAssigned, deps: Deps) -> list[Event]:
    dataset = deps.datasets.get(event.dataset)
    if dataset is None:
        held = ", ".join(sorted(deps.datasets)) or "none"
        return [_failed(event, deps, f"dataset {event.dataset!r} is not held here (holds {held})")]
    try:
        clip_norm = central_dp_norm(event)
        start = await _start_weights(event, dataset, deps)
        task = training_task(
            event,
            client_id=deps.client_id,
            data=dataset.data_ref(),
            initial_weights=start,
            device=deps.device,
        )
        result = await _train(task, event, deps)
    except (ValueError, ExecutorError, NonRetryableError) as exc:
        log.warning("round not trained: %s", exc)
        return [_failed(event, deps, f"{type(exc).__name__}: {exc}")]
    try:
        update = await _upload(event, deps, result, clip_norm)
    except NonRetryableError as exc:  # the grant refused (expired): the round goes on without
        log.warning("update not uploaded: %s", exc)
        return [_failed(event, deps, f"{type(exc).__name__}: {exc}")]
    deps.submitted.record(event.started_event_id, update)
    log.info("submitted update %s (%d samples)", update.update.object_key, update.num_samples)
    done = progress_event(
        event,
        client_id=deps.client_id,
        phase=Phase.COMPLETED,
        message=f"update submitted ({update.num_samples} samples)",
        metrics=update.metrics,
    )
    return [update, done]


async def _start_weights(event: RoundAssigned, dataset: LocalDataset, deps: Deps) -> bytes:
    """Safetensors bytes of the model to start from (hash-verified download, or round 1)."""
    if event.global_model is None:
        message = f"building initial {event.model} weights from seed {event.seed}"
    else:
        message = f"downloading global model {event.global_model.object_key}"
    announce = deps.publisher.publish(
        progress_event(event, client_id=deps.client_id, phase=Phase.DOWNLOADING, message=message)
    )
    # The progress event is sent while the weights come: neither waits for the other.
    weights, _ = await asyncio.gather(_fetch_weights(event, dataset, deps), announce)
    return weights


async def _fetch_weights(event: RoundAssigned, dataset: LocalDataset, deps: Deps) -> bytes:
    if event.global_model is not None:
        if event.global_model_url is None:
            raise TaskConfigError("the assignment names a global model but grants no URL for it")
        return await deps.artifacts.get_bytes(event.global_model_url, event.global_model)
    # Round 1: the weights every process derives from model, options, LoRA and seed (the
    # aggregator builds the same ones to rebuild initial + delta).
    options: dict[str, Any] = dict(event.model_options)
    lora = lora_settings(event.lora)  # with LoRA: the adapters and head only
    weights = await asyncio.to_thread(
        initial_weights, event.model, event.seed, dataset.spec, lora=lora, **options
    )
    return tensors_to_bytes(weights)


async def _train(task: TrainingTask, event: RoundAssigned, deps: Deps) -> TrainingResult:
    """Run the executor in the compute thread; its progress is published from this loop."""
    relay = ProgressRelay(
        event,
        client_id=deps.client_id,
        publisher=deps.publisher,
        loop=asyncio.get_running_loop(),
        min_interval_s=deps.progress_interval_s,
    )
    pump = asyncio.create_task(relay.run())
    try:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(deps.compute, deps.train, task, relay)
    except BaseException:
        relay.abort()  # a stopping trainer ends the thread at its next step
        pump.cancel()
        raise
    finally:
        release_free_memory()
    relay.close()
    await pump
    return result


async def _upload(
    event: RoundAssigned, deps: Deps, result: TrainingResult, clip_norm: float | None
) -> UpdateSubmitted:
    delta = delta_arrays(result.delta)
    dp = local_dp_usage(result.privacy) if result.privacy is not None else None
    if clip_norm is not None:
        delta, norm = clip_for_central_dp(delta, clipping_norm=clip_norm)
        dp = central_dp_usage(clip_norm)
        log.info("central DP: update norm %.4f clipped to %.4f", norm, clip_norm)
    announce = deps.publisher.publish(
        progress_event(
            event, client_id=deps.client_id, phase=Phase.UPLOADING, message="uploading update"
        )
    )
    # The one key granted to this client for this round; the aggregator accepts no other.
    upload = deps.artifacts.put_bytes(
        event.update_url, tensors_to_bytes(delta), key=event.update_key
    )
    ref, _ = await asyncio.gather(upload, announce)
    return UpdateSubmitted.create(
        source="trainer",
        job_id=event.job_id,
        traceparent=child_traceparent(event.traceparent),
        round=event.round,
        client_id=deps.client_id,
        update=ref,
        num_samples=result.num_samples,
        metrics=update_metrics(result.metrics),
        dp=dp,
    )


def _failed(event: RoundAssigned, deps: Deps, message: str) -> Event:
    return progress_event(event, client_id=deps.client_id, phase=Phase.FAILED, message=message)


HANDLERS = Routes[Deps](route(RoundAssigned, on_round_assigned))
"""The routing table: event class -> handler; ``HANDLERS.bind(deps)`` feeds the consumer."""
