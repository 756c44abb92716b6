"""Event handlers: ``round.started``, ``update.submitted`` and ``round.declined`` in;
``round.assigned`` (one per selected trainer, with its presigned URLs) and
``round.completed`` out.

Each handler takes one typed event and the :class:`~fedbus_aggregator.deps.Deps`, and
returns the events to publish; the consumer runner publishes them before it commits the
input. The deadline task (:func:`close_due_rounds`) publishes its own.
"""

from __future__ import annotations

import logging

from fedbus.bus import Publisher, Routes, route
from fedbus.errors import FedbusError, NonRetryableError
from fedbus.events import (
    Event,
    ModelRef,
    RoundCompleted,
    RoundDeclined,
    RoundStarted,
    UpdateSubmitted,
)
from fedbus.storage import update_key
from fedbus.telemetry import log_context
from fedbus_aggregator.aggregate import expire, global_model, judge, settle
from fedbus_aggregator.deps import Deps
from fedbus_aggregator.grants import assignments
from fedbus_aggregator.rounds import (
    Admission,
    RejectCode,
    RoundState,
    RoundStatus,
    UpdateRecord,
    UpdateStatus,
)

__all__ = [
    "HANDLERS",
    "close_due_rounds",
    "on_round_declined",
    "on_round_started",
    "on_update_submitted",
]

log = logging.getLogger(__name__)


async def on_round_started(event: RoundStarted, *, deps: Deps) -> list[Event]:
    """Open the round (or replace an open/expired one's selection and deadline on a retry)."""
    with log_context(job_id=event.job_id, round=event.round):
        async with deps.locks.hold((event.job_id, event.round)):
            state = await deps.store.get(event.job_id, event.round)
            if state is not None and state.status is RoundStatus.AGGREGATED:
                log.info("round already aggregated; re-emitting its round.completed")
                return [state.result] if state.result is not None else []
            if state is None:
                pending = await deps.store.updates(event.job_id, event.round)
                state = RoundState(event.job_id, event.round, event, updates=pending)
            elif state.started.event_id == event.event_id:
                pass  # the same start delivered again: carry on where it was
            elif event.time < state.started.time:
                log.info("ignoring an older round.started %s", event.event_id)
                return []
            else:
                log.info("round restarted: %d clients selected", len(event.selected_clients))
                state = state.restarted(event)
            await deps.store.save_started(state)
            try:
                for record in state.pending():
                    state = await _judge_and_record(state, record, deps)
            except NonRetryableError as exc:
                return await _unusable(state, deps, exc)
            grants = await _grants(state, deps)
            await _load_global_model(state, deps)
            return [*grants, *await settle(state, deps, published=True, may_expire=False)]


async def on_update_submitted(event: UpdateSubmitted, *, deps: Deps) -> list[Event]:
    """Validate and record one client's update; aggregate when the round is complete."""
    with log_context(job_id=event.job_id, round=event.round, client_id=event.client_id):
        async with deps.locks.hold((event.job_id, event.round)):
            record = UpdateRecord(
                client_id=event.client_id,
                ref=event.update,
                num_samples=event.num_samples,
                metrics=dict(event.metrics),
                status=UpdateStatus.PENDING,
            )
            state = await deps.store.get(event.job_id, event.round)
            if state is None:
                return await _keep_for_later(event, record, deps)
            admission = state.admit(event.client_id)
            if admission is Admission.CLOSED:
                return _after_close(state, event)
            if admission is Admission.DUPLICATE:
                # A redelivery after a crash lands here too: the round may be due now.
                log.info("duplicate update from %s ignored", event.client_id)
                return await settle(state, deps, published=True)
            if admission is Admission.NOT_SELECTED:
                reason = f"client {event.client_id} was not selected for round {event.round}"
                log.warning("update rejected: %s", reason)
                await deps.store.record_update(
                    event.job_id, event.round, record.rejected(RejectCode.NOT_SELECTED, reason)
                )
                return []
            try:
                state = await _judge_and_record(state, record, deps)
            except NonRetryableError as exc:
                await deps.store.record_update(event.job_id, event.round, record)
                return await _unusable(state, deps, exc)
            return await settle(state, deps, published=True)


async def on_round_declined(event: RoundDeclined, *, deps: Deps) -> list[Event]:
    """A selected trainer will not train this attempt (its site policy): drop it now.

    So a round whose other clients have all reported closes without waiting for the
    deadline. A decline of an earlier attempt, of a client not selected, or of one whose
    update was already judged changes nothing.
    """
    with log_context(job_id=event.job_id, round=event.round, client_id=event.client_id):
        async with deps.locks.hold((event.job_id, event.round)):
            state = await deps.store.get(event.job_id, event.round)
            if state is None or state.started.event_id != event.started_event_id:
                log.info("decline of an attempt this aggregator is not running; ignored")
                return []
            if state.admit(event.client_id) is not Admission.CHECK:
                return []
            reasons = "; ".join(f"{r.code}: {r.message}" for r in event.reasons)
            key = update_key(event.job_id, event.round, event.client_id)
            record = UpdateRecord(
                client_id=event.client_id,
                ref=ModelRef(object_key=key, size_bytes=0, sha256="0" * 64),  # nothing stored
                num_samples=0,
                metrics={},
                status=UpdateStatus.PENDING,
            ).rejected(RejectCode.DECLINED, f"declined by its site policy ({reasons})")
            log.info("client declined the round: %s", reasons)
            await deps.store.record_update(event.job_id, event.round, record)
            return await settle(state.with_update(record), deps, published=True)


async def close_due_rounds(*, deps: Deps, publisher: Publisher) -> int:
    """Close rounds past their deadline and publish what an earlier run did not.

    Returns the number of events published. A round whose closing fails is logged and
    tried again on the next call.
    """
    published = 0
    for job_id, round_ in await deps.store.due(deps.clock()):
        with log_context(job_id=job_id, round=round_):
            try:
                published += await _close_one(job_id, round_, deps, publisher)
            except FedbusError:
                log.exception("closing the round failed; will retry")
    return published


async def _close_one(job_id: str, round_: int, deps: Deps, publisher: Publisher) -> int:
    async with deps.locks.hold((job_id, round_)):
        state = await deps.store.get(job_id, round_)
        if state is None:
            return 0
        if state.status is RoundStatus.AGGREGATED:
            events: list[Event] = [state.result] if state.result and not state.published else []
        else:
            events = await settle(state, deps, published=False)
    if not events:
        return 0
    await publisher.publish_many(events)
    if any(isinstance(e, RoundCompleted) for e in events):
        await deps.store.mark_published(job_id, round_)
    return len(events)


async def _judge_and_record(state: RoundState, record: UpdateRecord, deps: Deps) -> RoundState:
    if state.admit(record.client_id) is Admission.NOT_SELECTED:
        reason = f"client {record.client_id} was not selected for round {state.round}"
        judged = record.rejected(RejectCode.NOT_SELECTED, reason)
    else:
        reference = await global_model(state, deps)
        judged = await judge(record, state=state, reference=reference, deps=deps)
    if judged.status is UpdateStatus.REJECTED:
        log.warning("update of %s rejected: %s", judged.client_id, judged.reason)
    await deps.store.record_update(state.job_id, state.round, judged)
    return state.with_update(judged)


async def _grants(state: RoundState, deps: Deps) -> list[Event]:
    """A ``round.assigned`` for each selected client that has not reported yet.

    A redelivered ``round.started`` grants again (new URLs, same keys); the trainer answers
    an assignment of a (job, round, ``round.started``) it already trained with its stored
    ``update.submitted``.
    """
    if deps.presigner is None or state.status is not RoundStatus.OPEN:
        return []
    waiting = [c for c in state.selected if c not in state.reported()]
    out = assignments(
        state.started, waiting, presigner=deps.presigner, now=deps.clock(),
        grace_s=deps.grant_grace_s, source=deps.source,
    )  # fmt: skip
    if out and deps.assigned_topics is not None:
        await deps.assigned_topics.ensure(a.client_id for a in out)
    log.info("granted %d clients their round (URLs until %s)", len(out),
             out[0].urls_expire_at.isoformat() if out else "-")  # fmt: skip
    return list(out)


async def _load_global_model(state: RoundState, deps: Deps) -> None:
    """Load the round's model now, before its clients' uploads compete for storage.

    Best effort: an update judged later loads it again and meets any error there, where the
    round's rules (reject, expire, retry) apply.
    """
    if state.status is not RoundStatus.OPEN:
        return
    try:
        await global_model(state, deps)
    except Exception as exc:  # never fails the round's start; CancelledError still passes
        log.warning("round's global model not loaded yet (%s); judging will try again", exc)


async def _unusable(state: RoundState, deps: Deps, exc: NonRetryableError) -> list[Event]:
    # Without the round's global model no update can be judged: the round cannot succeed.
    log.error("round cannot proceed: %s", exc)
    if state.status is not RoundStatus.OPEN:
        return []
    return await expire(state, deps, f"round {state.round}: {exc}")


async def _keep_for_later(event: UpdateSubmitted, record: UpdateRecord, deps: Deps) -> list[Event]:
    # The update overtook its round.started (they travel on different topics).
    known = await deps.store.updates(event.job_id, event.round)
    if event.client_id not in known:
        log.info("update arrived before its round.started; kept pending")
        await deps.store.record_update(event.job_id, event.round, record)
    return []


def _after_close(state: RoundState, event: UpdateSubmitted) -> list[Event]:
    if event.client_id in state.updates and state.result is not None:
        # Seen before the round closed: this is a redelivery, so answer as before.
        return [state.result]
    log.info("late update from %s for an aggregated round ignored", event.client_id)
    return []


HANDLERS = Routes[Deps](
    route(RoundStarted, on_round_started),
    route(UpdateSubmitted, on_update_submitted),
    route(RoundDeclined, on_round_declined),
)
"""The routing table: event class -> handler; ``HANDLERS.bind(deps)`` feeds the consumer."""
