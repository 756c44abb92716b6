"""Event handlers: remember jobs, rounds and ledgers; register a version the ledger backs.

A job is registered once its ``job.accepted`` (tenant, spec), its ``job.completed``, the
``round.completed`` of rounds ``1..rounds_completed`` and, for a job that asked for DP, the
accountant's ``budget.updated`` of each of those rounds have all been seen, whatever order the
four topics deliver them in; the handler of whichever arrives last decides. The registered
guarantee is the ledger's (:func:`~fedbus_registry.versions.ledger_verdict`): a
``job.completed`` whose guarantee disagrees with it (or claims one for a job without DP) is
refused, and no version is ever registered for that job.

How a refusal reaches ``job.completed.dlq``, with the reason:

- The ``job.completed`` arrives last: its handler records the refusal and raises
  :class:`~fedbus.errors.NonRetryableError`; the consumer runner dead-letters the original
  record (its partition, offset, bytes and headers).
- Another event arrives last (the ledger's final ``budget.updated``, a ``round.completed``, the
  ``job.accepted``): the ``job.completed`` was handled earlier and parked in the store, so its
  handler records the refusal and parks the stored ``job.completed`` on ``job.completed.dlq``
  itself, with the runner's helper (:func:`~fedbus.bus.codec.dead_letter_for`), re-encoded,
  and partition and offset ``-1`` (unknown).
- The ledger never completes: :func:`refuse_overdue` (run every minute or so by the service)
  refuses a DP job whose ``job.completed`` has waited longer than ``FEDBUS_LEDGER_WAIT_S``
  with its job and rounds known but ledger entries missing, the same way.

Why not make the ``job.completed`` handler retry until the ledger catches up: the consumer
handles one record at a time, so while it retries, the ``budget.updated`` it waits for is
not consumed, and the retries (seconds) would end in a false refusal. Orchestration publishes
``job.completed`` only after the last round's ``budget.updated``, so an honest ledger is
already on Kafka: the wait covers only this consumer's lag.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from fedbus.bus import Routes, dlq_topic, route
from fedbus.bus.codec import dead_letter_for, encode_event
from fedbus.errors import NonRetryableError
from fedbus.events import (
    BudgetUpdated,
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
    AwaitLedger,
    Certified,
    JobInfo,
    LedgerEntry,
    ModelVersion,
    Refused,
    RoundRecord,
    is_registrable,
    ledger_verdict,
    missing_rounds,
    new_version,
)

__all__ = [
    "HANDLERS",
    "SOURCE",
    "on_budget_updated",
    "on_job_accepted",
    "on_job_completed",
    "on_round_completed",
    "refuse_overdue",
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
        base_model=version.spec.base_model,
    )
    event_id = uuid.uuid5(_EVENT_IDS, f"model.registered:{version.spec.job_id}")
    return event.model_copy(update={"event_id": str(event_id)})


async def on_job_accepted(event: JobAccepted, *, deps: Deps) -> list[Event]:
    """Remember the job's tenant and spec; register it if its end was seen first."""
    with log_context(job_id=event.job_id):
        await deps.store.save_job(JobInfo(event.job_id, event.tenant, event.spec))
        return await _register_if_ready(event.job_id, deps=deps, cause=event)


async def on_round_completed(event: RoundCompleted, *, deps: Deps) -> list[Event]:
    """Remember the round's participants, metrics and global model."""
    with log_context(job_id=event.job_id, round=event.round):
        record = RoundRecord(
            round=event.round,
            participants=tuple(event.participants),
            metrics=dict(event.metrics),
            global_model=event.global_model,
            base_model=event.base_model,
        )
        await deps.store.save_round(event.job_id, record)
        return await _register_if_ready(event.job_id, deps=deps, cause=event)


async def on_budget_updated(event: BudgetUpdated, *, deps: Deps) -> list[Event]:
    """Remember the accountant's total after the event's round (the first per round stays)."""
    with log_context(job_id=event.job_id, round=event.round):
        if event.round is None:
            log.info("budget.updated of job %s names no round: not a ledger entry", event.job_id)
            return []
        entry = LedgerEntry(
            round=event.round,
            epsilon_spent=event.total.epsilon_spent,
            delta=event.total.delta,
            exhausted=event.exhausted,
        )
        await deps.store.save_ledger(event.job_id, entry)
        return await _register_if_ready(event.job_id, deps=deps, cause=event)


async def on_job_completed(event: JobCompleted, *, deps: Deps) -> list[Event]:
    """Verify the final model and register the job's version (or wait for missing facts).

    Raises
    ------
    NonRetryableError
        The final model is missing from the artifact store or its size or SHA-256 differ;
        the job was refused before; or the accountant's ledger contradicts its guarantee.
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
        refused = await store.refusal(event.job_id)
        if refused is not None:
            raise NonRetryableError(f"job {event.job_id} was refused: {refused}")
        stored = await store.completion(event.job_id)
        if stored is not None and _claims(stored) != _claims(event):
            # The first job.completed kept is the one judged; a different one is not a retry.
            raise NonRetryableError(
                f"job {event.job_id} already has a different job.completed (event "
                f"{stored.event_id}); this one ({event.event_id}) is not registered"
            )
        await _verify_artifact(event.job_id, final, deps.artifacts)
        await store.save_completion(event)
        return await _register_if_ready(event.job_id, deps=deps, cause=event)


def _claims(done: JobCompleted) -> tuple[object, ...]:
    """What a ``job.completed`` states, without its envelope (a re-sent one states the same)."""
    return (done.status, done.rounds_completed, done.final_model, done.guarantee)


async def _verify_artifact(job_id: str, ref: ModelRef, artifacts: ArtifactStore) -> None:
    try:
        await artifacts.get_bytes(ref)
    except NonRetryableError as exc:
        raise NonRetryableError(f"final model of job {job_id} is not valid: {exc}") from exc


async def _register_if_ready(job_id: str, *, deps: Deps, cause: Event) -> list[Event]:
    store = deps.store
    done = await store.completion(job_id)
    if done is None or await store.version_for_job(job_id) is not None:
        return []
    if await store.refusal(job_id) is not None:
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
    if rounds and all(done.final_model != r.global_model for r in rounds):
        reason = (
            f"job.completed of job {job_id} names final model {done.final_model!r}, which is "
            "no round's global model of this job: the ledger's guarantee cannot be attached to it"
        )
        await _refuse(done, reason, deps=deps, raise_=isinstance(cause, JobCompleted))
        return []
    seen = [r.round for r in rounds]
    verdict = ledger_verdict(job, done, await store.ledger(job_id), rounds_seen=seen)
    if isinstance(verdict, AwaitLedger):
        log.info("job %s ended; waiting for budget.updated of rounds %s", job_id, verdict.missing)
        return []
    if isinstance(verdict, Refused):
        await _refuse(done, verdict.reason, deps=deps, raise_=isinstance(cause, JobCompleted))
        return []
    return await _register(job, rounds, done, verdict, store=store, cause=cause)


async def _refuse(done: JobCompleted, reason: str, *, deps: Deps, raise_: bool) -> None:
    """Record the refusal of ``done``'s job, then dead-letter ``done`` (see the module doc).

    ``raise_``: ``done`` is the event being handled, so the runner dead-letters its original
    record when this raises; otherwise the stored ``done`` is parked here.
    """
    created = await deps.store.refuse(done.job_id, reason)
    log.warning("job %s refused: %s", done.job_id, reason)
    if raise_:
        raise NonRetryableError(reason)
    if not created:
        return
    key = done.kafka_key()
    letter = dead_letter_for(
        topic=done.type,
        partition=-1,
        offset=-1,
        key=key,
        value=encode_event(done),
        headers=[],
        error=NonRetryableError(reason),
        attempts=1,
        source=deps.group,
    )
    await deps.dead_letters.publish_raw(dlq_topic(done.type), letter, key=key, headers=[])


async def refuse_overdue(deps: Deps, *, now: datetime, wait: timedelta) -> list[str]:
    """Refuse the DP jobs whose ledger is still incomplete ``wait`` after their end arrived.

    Only a job whose ``job.accepted`` and rounds are all known is refused here (a job waiting
    for those waits on, as before the ledger existed). Returns the refused job ids.
    """
    refused = []
    for done in await deps.store.overdue(now - wait):
        job = await deps.store.job(done.job_id)
        if job is None:
            continue
        rounds = await deps.store.rounds(done.job_id)
        if missing_rounds(done.rounds_completed, [r.round for r in rounds]):
            continue
        ledger = await deps.store.ledger(done.job_id)
        verdict = ledger_verdict(job, done, ledger, rounds_seen=[r.round for r in rounds])
        if not isinstance(verdict, AwaitLedger):
            continue  # decided by the handlers as its last event arrived
        claim = "no guarantee" if done.guarantee is None else f"epsilon {done.guarantee.epsilon!r}"
        reason = (
            f"job {done.job_id}: job.completed says {claim} after "
            f"{done.rounds_completed} round(s), "
            f"but after {wait.total_seconds():g} s the accountant's ledger has no budget.updated "
            f"for round(s) {', '.join(map(str, verdict.missing))}"
        )
        await _refuse(done, reason, deps=deps, raise_=False)
        refused.append(done.job_id)
    return refused


async def _register(
    job: JobInfo,
    rounds: list[RoundRecord],
    done: JobCompleted,
    verdict: Certified,
    *,
    store: RegistryStore,
    cause: Event,
) -> list[Event]:
    new = new_version(job, rounds, done, guarantee=verdict.guarantee)
    version, created = await store.register(new)
    if not created:
        return []
    log.info(
        "registered %s version %d (tenant %s) from job %s",
        version.spec.name,
        version.version,
        version.spec.tenant,
        job.job_id,
    )
    return [registered_event(version, cause=cause)]


HANDLERS = Routes[Deps](
    route(JobAccepted, on_job_accepted),
    route(RoundCompleted, on_round_completed),
    route(JobCompleted, on_job_completed),
    route(BudgetUpdated, on_budget_updated),
)
"""The routing table: event class -> handler; ``HANDLERS.bind(deps)`` feeds the consumer."""
