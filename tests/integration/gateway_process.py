"""A gateway process on the real stack with API keys for two tenants.

``tests/integration/conftest.py`` builds the ``gateway`` fixture from :func:`running_gateway`;
a test that needs other settings (limits, keys) calls it with ``env=``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from fedbus.settings import FedbusSettings
from tests.integration.harness import ServiceProcess, free_port, fresh_group, unique

TOPICS = [
    "job.requested", "job.accepted", "job.rejected", "job.completed", "job.failed",
    "round.started", "round.completed", "progress",
]  # fmt: skip


class Gateway:
    """The running process, its URL and the keys of two tenants ``a`` and ``b``."""

    def __init__(self, proc: ServiceProcess, url: str, keys: dict[str, tuple[str, str]]) -> None:
        self.proc, self.url, self.keys = proc, url, keys

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who][0]}"}

    def tenant(self, who: str) -> str:
        return self.keys[who][1]


@asynccontextmanager
async def running_gateway(
    settings: FedbusSettings, log_dir: Path, *, env: Mapping[str, str] | None = None
) -> AsyncIterator[Gateway]:
    """Start a gateway (fresh consumer group, two tenants' keys), wait until ready, stop it."""
    group = unique("gateway-it")
    await fresh_group(settings, group, TOPICS)
    port = free_port()
    keys = {who: (unique(f"key-{who}"), unique(f"tenant-{who}")) for who in ("a", "b")}
    api_keys = [{"key": k, "tenant": t, "scopes": ["jobs:write", "jobs:read", "models:read"]}
                for k, t in keys.values()]  # fmt: skip
    proc = ServiceProcess.start(
        "gateway", "fedbus_gateway", log_dir=log_dir,
        env={"FEDBUS_CONSUMER_GROUP": group, "FEDBUS_HTTP_PORT": str(port),
             "FEDBUS_GATEWAY_API_KEYS": json.dumps(api_keys),
             "FEDBUS_REGISTRY_URL": f"http://127.0.0.1:{free_port()}", **(env or {})},
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        await _wait_ready(proc, url)
        yield Gateway(proc, url, keys)
    finally:
        proc.stop()


async def _wait_ready(proc: ServiceProcess, url: str, limit_s: float = 90) -> None:
    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        while time.monotonic() < deadline:
            assert proc.alive(), f"gateway exited:\n{proc.text()[-3000:]}"
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)
    pytest.fail(f"gateway not ready within {limit_s:.0f} s:\n{proc.text()[-3000:]}")
