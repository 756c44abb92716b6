"""Orchestration killed with SIGKILL between rounds: restarted, it continues the job from
PostgreSQL and Kafka without starting any round twice.

Its own module, so that no other orchestration process of this test run shares its work.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from fedbus.bus import EventProducer
from fedbus.events import JobCompleted, RoundStarted
from fedbus.settings import FedbusSettings

from .harness import EventWatcher, fresh_group, unique
from .test_orchestration_service import (
    CONSUMED,
    WATCHED,
    Orchestration,
    _announce_trainers,
    _completed,
    _is,
    _request,
)


async def test_a_killed_process_restarts_and_continues_without_repeating_a_round(
    settings: FedbusSettings, tmp_path: Path,
) -> None:  # fmt: skip
    orch = Orchestration(settings, tmp_path)
    await fresh_group(settings, orch.group, CONSUMED)
    producer = EventProducer(settings, client_id="orchestration-restart-test")
    await producer.start()
    try:
        proc = orch.start()
        dataset, ids = unique("digits"), [unique("client") for _ in range(3)]
        await _announce_trainers(settings, producer, dataset, ids)
        request = _request(dataset, rounds=3)
        async with EventWatcher(settings, WATCHED) as watch:
            await producer.publish(request)
            await watch.wait_for(_is(RoundStarted, request.job_id, round=1), limit_s=60)
            await producer.publish(_completed(request.job_id, 1))
            await watch.wait_for(_is(RoundStarted, request.job_id, round=2), limit_s=30)

            proc.stop(signal.SIGKILL)
            await producer.publish(_completed(request.job_id, 2))  # arrives while it is down
            await producer.publish(_completed(request.job_id, 1))  # a stale, late duplicate
            restarted = orch.start()
            await watch.wait_for(_is(RoundStarted, request.job_id, round=3), limit_s=60)
            await producer.publish(_completed(request.job_id, 3))
            await watch.wait_for(_is(JobCompleted, request.job_id), limit_s=30)
            await asyncio.sleep(2)  # anything repeated would show up now
            await watch.poll()
    finally:
        orch.stop_all()
        await producer.stop()

    starts = {e.event_id: e for e in watch.seen if _is(RoundStarted, request.job_id)(e)}
    assert sorted(e.round for e in starts.values() if isinstance(e, RoundStarted)) == [1, 2, 3]
    ends = {e.event_id for e in watch.seen if _is(JobCompleted, request.job_id)(e)}
    assert len(ends) == 1
    log = restarted.text()
    assert "round.completed handled: job running, round 3 attempt 1" in log  # it did the work
    assert "round.completed ignored" in log  # the stale round-1 result
