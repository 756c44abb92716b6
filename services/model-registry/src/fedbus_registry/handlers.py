"""Event handlers: remember jobs and rounds, register a version when a job's model is final.

A job is registered once its ``job.accepted`` (tenant, spec), its ``job.completed`` and the
``round.completed`` of rounds ``1..rounds_completed`` have all been seen, whatever order the
three topics deliver them in; the handler of whichever arrives last registers it.
"""

from __future__ import annotations

import logging
import uuid

from fedbus.bus import Routes, route
from fedbus.errors import NonRetryableError
from fedbus.events import (
    Event,
    JobAccepted,
    JobCompleted,
    ModelRef,
    ModelRegistered,
    RoundCompleted,
    child_traceparent,
)
from fedbus.storage import ArtifactStore
from fedbus.telemetry import log_context
from fedbus_registry.deps import Deps
from fedbus_registry.store import RegistryStore
from fedbus_registry.versions import (
    JobInfo,
    ModelVersion,
    RoundRecord,
    is_registrable,
    missing_rounds,
    new_version,
)

__all__ = [
    "HANDLERS",
    "SOURCE",
    "on_job_accepted",
    "on_job_completed",
    "on_round_completed",
    "registered_event",
]

log = logging.getLogger(__name__)

SOURCE = "model-registry"
_EVENT_IDS = uuid.UUID("5d0c6a4e-7f61-4b1e-9a43-4f0f6d2b9c11")


def registered_event(version: ModelVersion, *, cause: Event) -> ModelRegistered:
    """The ``model.registered`` of ``version``, continuing the trace of ``cause``.

    Its event id is derived from the job id, so announcing a version again (after a crash
    between registering and publishing) repeats the same event and consumers deduplicate it.
    """
    event = ModelRegistered.create(
        source=SOURCE,
        job_id=version.spec.job_id,
        traceparent=child_traceparent(cause.traceparent),
        time=version.created_at,
        name=version.spec.name,
        version=version.version,
        artifact=version.spec.artifact,
        metrics=version.spec.metrics,
        guarantee=version.spec.guarantee,
    )
    event_id = uuid.uuid5(_EVENT_IDS, f"model.registered:{version.spec.job_id}")
    return event.model_copy(update={"event_id": str(event_id)})


async def on_job_accepted(event: JobAccepted, *, deps: Deps) -> list[Event]:
    """Remember the job's tenant and spec; register it if its end was seen first."""
    with log_context(job_id=event.job_id):
        await deps.store.save_job(JobInfo(event.job_id, event.tenant, event.spec))
        return await _register_if_ready(event.job_id, store=deps.store, cause=event)


async def on_round_completed(event: RoundCompleted, *, deps: Deps) -> list[Event]:
    """Remember the round's participants, metrics and global model."""
    with log_context(job_id=event.job_id, round=event.round):
        record = RoundRecord(
            round=event.round,
            participants=tuple(event.participants),
            metrics=dict(event.metrics),
            global_model=event.global_model,
        )
        await deps.store.save_round(event.job_id, record)
        return await _register_if_ready(event.job_id, store=deps.store, cause=event)


async def on_job_completed(event: JobCompleted, *, deps: Deps) -> list[Event]:
    """Verify the final model and register the job's version (or wait for missing facts).

    Raises
    ------
    NonRetryableError
        The final model is missing from the artifact store or its size or SHA-256 differ.
    """
    with log_context(job_id=event.job_id):
        store, final = deps.store, event.final_model
        if final is None or not is_registrable(event, register_cancelled=deps.register_cancelled):
            log.info("job %s ended %s: no version to register", event.job_id, event.status)
            return []
        existing = await store.version_for_job(event.job_id)
        if existing is not None:
            log.info("job %s already registered as version %d", event.job_id, existing.version)
            return [registered_event(existing, cause=event)]
        await _verify_artifact(event.job_id, final, deps.artifacts)
        await store.save_completion(event)
        return await _register_if_ready(event.job_id, store=store, cause=event)


async def _verify_artifact(job_id: str, ref: ModelRef, artifacts: ArtifactStore) -> None:
    try:
        await artifacts.get_bytes(ref)
    except NonRetryableError as exc:
        raise NonRetryableError(f"final model of job {job_id} is not valid: {exc}") from exc


async def _register_if_ready(job_id: str, *, store: RegistryStore, cause: Event) -> list[Event]:
    done = await store.completion(job_id)
    if done is None or await store.version_for_job(job_id) is not None:
        return []
    job = await store.job(job_id)
    if job is None:
        log.info("job %s ended; waiting for its job.accepted to register it", job_id)
        return []
    rounds = await store.rounds(job_id)
    missing = missing_rounds(done.rounds_completed, [r.round for r in rounds])
    if missing:
        log.info("job %s ended; waiting for round.completed of rounds %s", job_id, missing)
        return []
    version, created = await store.register(new_version(job, rounds, done))
    if not created:
        return []
    log.info(
        "registered %s version %d (tenant %s) from job %s",
        version.spec.name,
        version.version,
        version.spec.tenant,
        job_id,
    )
    return [registered_event(version, cause=cause)]


HANDLERS = Routes[Deps](
    route(JobAccepted, on_job_accepted),
    route(RoundCompleted, on_round_completed),
    route(JobCompleted, on_job_completed),
)
"""The routing table: event class -> handler; ``HANDLERS.bind(deps)`` feeds the consumer."""
