"""The deadline watcher: retries or fails rounds that ran past their deadline, from PostgreSQL.

It reads the running jobs from the store on every tick, so it carries on after a restart. Its
transitions are saved with their events unpublished, then published from the store, so a crash
between the two publishes them on the next tick (same event ids).
"""

from __future__ import annotations

import asyncio
import logging

from fedbus.bus import Publisher
from fedbus.errors import RetryableError
from fedbus.telemetry import log_context
from fedbus_orchestration.deps import Deps
from fedbus_orchestration.handlers import roster_for
from fedbus_orchestration.jobs import after_deadline, overdue
from fedbus_orchestration.store import ConcurrentUpdateError

__all__ = ["check_deadlines", "watch_deadlines"]

log = logging.getLogger(__name__)


async def check_deadlines(deps: Deps) -> int:
    """Apply the retry policy to every overdue round; returns how many jobs changed."""
    now = deps.clock()
    changed = 0
    for job in await deps.store.running():
        if not overdue(job, now, grace_seconds=deps.policy.round_grace_seconds):
            continue
        with log_context(job_id=job.job_id, round=job.round):
            roster = await roster_for(deps, job.spec, now)
            transition = after_deadline(
                job, eligible=roster.eligible, now=now, policy=deps.policy,
                samples=roster.samples, lifetimes=roster.lifetimes,
            )  # fmt: skip
            cause = f"deadline:{job.job_id}:{job.round}:{job.attempt}"
            try:
                await deps.store.record(
                    cause_id=cause, events=transition.events, job=transition.job, published=False
                )
            except ConcurrentUpdateError:
                log.info("round %d changed while its deadline was handled; skipped", job.round)
                continue
            log.info("round %d attempt %d missed its deadline", job.round, job.attempt)
            changed += 1
    return changed


async def watch_deadlines(deps: Deps, publisher: Publisher, *, every_s: float = 1.0) -> None:
    """Every ``every_s`` seconds: handle overdue rounds, then publish what is pending."""
    while True:
        try:
            await check_deadlines(deps)
            await deps.store.publish_pending(publisher.publish_many)
        except RetryableError as exc:
            log.warning("deadline check failed, will retry: %s", exc)
        await asyncio.sleep(every_s)
