"""Every service answers /healthz, /readyz and /metrics, and logs JSON with its context."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest

from fedbus.service import Service
from fedbus.settings import FedbusSettings
from fedbus.telemetry import JsonFormatter, log_context


async def test_ops_endpoints_follow_readiness_and_the_service_stops_on_request() -> None:
    service = Service("probe", FedbusSettings(_env_file=None, http_port=0))  # type: ignore[call-arg]
    ready = {"kafka": False}
    service.add_readiness("kafka", lambda: ready["kafka"])

    async def work() -> None:
        await asyncio.Event().wait()

    running = asyncio.create_task(service.run(work()))
    await asyncio.wait_for(service.started.wait(), timeout=10)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}") as http:
        health = await http.get("/healthz")
        not_ready = await http.get("/readyz")
        ready["kafka"] = True
        now_ready = await http.get("/readyz")
        metrics = await http.get("/metrics")
    service.request_stop()
    await asyncio.wait_for(running, timeout=10)

    assert health.json() == {"status": "ok", "service": "probe"}
    assert (not_ready.status_code, not_ready.json()["checks"]) == (503, {"kafka": False})
    assert now_ready.status_code == 200
    assert 'fedbus_service_up{service="probe"} 1.0' in metrics.text


async def test_a_failing_task_brings_the_service_down() -> None:
    service = Service("crashy", FedbusSettings(_env_file=None, http_port=0))  # type: ignore[call-arg]

    async def broken() -> None:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        await asyncio.wait_for(service.run(broken()), timeout=10)


def test_json_log_lines_carry_the_job_context() -> None:
    record = logging.LogRecord("fedbus.x", logging.INFO, __file__, 1, "round %d done", (3,), None)

    with log_context(job_id="job-7", round=3):
        line = json.loads(JsonFormatter("aggregator").format(record))

    assert line["message"] == "round 3 done"
    assert (line["service"], line["job_id"], line["round"]) == ("aggregator", "job-7", 3)
