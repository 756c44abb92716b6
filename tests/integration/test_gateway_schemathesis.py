"""schemathesis's CLI against the real gateway process on the real stack (PostgreSQL, Kafka).

The unit run (services/gateway/tests/test_schemathesis.py) uses the fakes; this one reaches
PostgreSQL, where text that cannot be stored (NUL, lone surrogates) or integers out of a
column's range used to become 500s. Every check, every operation, the examples, coverage,
fuzzing and stateful phases (links inferred: POST /v1/jobs feeds show, events and cancel),
bounded by MAX_EXAMPLES, derandomized; 0 failures.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from fedbus.settings import FedbusSettings
from tests.integration.gateway_process import running_gateway
from tests.integration.harness import ServiceProcess, free_port, fresh_group, unique

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MAX_EXAMPLES = 100
"""Fuzzing examples per operation; the coverage phase adds its own."""
LIMIT_S = 300.0
"""The CLI is killed past this (it takes about 2 minutes on 2 cores)."""


def config(key: str) -> str:
    """schemathesis.toml: the key for both schemes; POST /v1/jobs may 422 a schema-valid spec."""
    return f"""
continue-on-failure = true
cache.enabled = false  # no .schemathesis/ state in the checkout; each run starts afresh
# The first SSE frame is the job's status; a job here never ends, so its stream would stay open.
max-stream-events = 1
request-timeout = 10

[auth.openapi.HTTPBearer]
bearer = "{key}"

[auth.openapi.APIKeyHeader]
api_key = "{key}"

[generation]
max-examples = {MAX_EXAMPLES}
deterministic = true

# HTTP recipients ignore header fields they do not know (RFC 9110 5.1), so an unknown header
# beside Last-Event-ID is not invalid input: no check may expect it refused.
[[operations]]
include-name = "GET /v1/jobs/{{job_id}}/events"
generation.allow-extra-parameters = false

# A spec has rules across fields that JSON Schema cannot state (min_clients <=
# clients_per_round, each strategy's and privacy mode's options): the documented 422.
[[operations]]
include-name = "POST /v1/jobs"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "409", "422", "429"]

# A cancel reason PostgreSQL cannot store (a NUL, a lone surrogate) is the documented 422
# naming the field; the JSON Schema of a string cannot exclude them.
[[operations]]
include-name = "POST /v1/jobs/{{job_id}}/cancel"
[operations.checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
"""


@asynccontextmanager
async def running_registry(settings: FedbusSettings, log_dir: Path) -> AsyncIterator[str]:
    """A model-registry process (so /v1/models answers, not 503); yields its URL once ready."""
    group = unique("registry-st")
    await fresh_group(settings, group, ["job.accepted", "round.completed", "job.completed"])
    port = free_port()
    proc = ServiceProcess.start(
        "model-registry", "fedbus_registry", log_dir=log_dir,
        env={"FEDBUS_CONSUMER_GROUP": group, "FEDBUS_HTTP_PORT": str(port)},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            while time.monotonic() < deadline:
                assert proc.alive(), f"registry exited:\n{proc.text()[-3000:]}"
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.5)
            else:
                pytest.fail(f"registry not ready:\n{proc.text()[-3000:]}")
        yield url
    finally:
        proc.stop()


async def test_schemathesis_finds_no_failure_against_the_real_gateway(
    settings: FedbusSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"FEDBUS_GATEWAY_RATE_PER_SECOND": "1000000", "FEDBUS_GATEWAY_RATE_BURST": "1000000",
           "FEDBUS_GATEWAY_AUTH_FAILURES": "1000000"}  # fmt: skip
    async with (
        running_registry(settings, tmp_path) as registry_url,
        running_gateway(
            settings, tmp_path, env={**env, "FEDBUS_REGISTRY_URL": registry_url}
        ) as gateway,
    ):
        toml = tmp_path / "schemathesis.toml"
        toml.write_text(config(gateway.keys["a"][0]))
        report, har, log = (tmp_path / name for name in ("run.json", "run.har", "run.log"))
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                str(SCHEMATHESIS), "--config-file", str(toml), "--no-color", "run",
                f"{gateway.url}/openapi.json", "--checks", "all", "--workers", "1",
                "--phases", "examples,coverage,fuzzing,stateful", "--report", "json,har",
                "--report-json-path", str(report), "--report-har-path", str(har),
                stdout=out, stderr=out,
            )  # fmt: skip
            try:
                await asyncio.wait_for(proc.wait(), LIMIT_S)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    text = log.read_text(errors="replace")
    run = json.loads(report.read_text())
    statuses = Counter(
        e["response"]["status"] for e in json.loads(har.read_text())["log"]["entries"]
    )
    cases = run["test_cases"]
    with capsys.disabled():  # the totals belong in the run's log, failing or not
        print(
            f"\nschemathesis (real gateway): {cases['generated']} cases, "
            f"statuses {dict(sorted(statuses.items()))}, {cases['unique_failures']} unique failures"
        )

    assert proc.returncode == 0, text[-6000:]
    # every operation of the OpenAPI document, :predict included
    assert run["operations"]["tested"] == run["operations"]["total"] == 9
    assert cases["unique_failures"] == 0
    assert not statuses.keys() & {500, 502, 504}
