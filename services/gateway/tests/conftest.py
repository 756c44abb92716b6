"""Fakes for the gateway's ports and an HTTP client on the app (no Kafka, no PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from fedbus.bus import InMemoryBus
from fedbus_gateway import (
    ApiKeyConfig,
    Gateway,
    JobEventHub,
    KeyRing,
    RateLimiter,
    Scope,
    create_app,
    key_sha256,
)
from fedbus_gateway.adapters import InMemoryJobStore, RegistryClient

ALL = [Scope.JOBS_WRITE, Scope.JOBS_READ, Scope.MODELS_READ]
KEYS = {
    "acme": "acme-secret-key",
    "acme-reader": "acme-read-only",
    "globex": "globex-secret-key",
    "hashed": "stored-as-a-hash",
}


@dataclass
class FakeClock:
    """A monotonic clock the test moves by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeRegistry:
    """The registry's read API behind an httpx MockTransport; records what it was asked."""

    models: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    down: bool = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        tenant = request.url.params.get("tenant", "")
        parts = request.url.path.strip("/").split("/")  # v1 models [name versions [v]]
        if len(parts) == 2:
            names = sorted({n for t, n in self.models if t == tenant})
            return httpx.Response(200, json={"models": [{"name": n} for n in names]})
        versions = self.models.get((tenant, parts[2]))
        if versions is None:
            return httpx.Response(404, json={"detail": f"no model '{parts[2]}'"})
        if len(parts) == 4:
            return httpx.Response(200, json={"versions": versions})
        match = [v for v in versions if v["version"] == int(parts[4])]
        if not match:
            return httpx.Response(404, json={"detail": f"no version {parts[4]}"})
        return httpx.Response(200, json=match[0])


@dataclass
class Env:
    """The app with its fakes."""

    gateway: Gateway
    bus: InMemoryBus
    jobs: InMemoryJobStore
    hub: JobEventHub
    registry: FakeRegistry
    clock: FakeClock
    client: httpx.AsyncClient

    keys: dict[str, str] = field(default_factory=lambda: dict(KEYS))

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def limit(self, *, rate: float, burst: int) -> FakeClock:
        """Replace the rate limiter; returns its clock."""
        clock = FakeClock()
        self.gateway.limiter = RateLimiter(rate=rate, burst=burst, clock=clock)
        return clock


def key_configs() -> list[ApiKeyConfig]:
    return [
        ApiKeyConfig(key=SecretStr(KEYS["acme"]), tenant="acme", scopes=ALL, name="acme-ci"),
        ApiKeyConfig(key=SecretStr(KEYS["acme-reader"]), tenant="acme", scopes=[Scope.JOBS_READ]),
        ApiKeyConfig(key=SecretStr(KEYS["globex"]), tenant="globex", scopes=ALL),
        ApiKeyConfig(key_sha256=key_sha256(KEYS["hashed"]), tenant="initech", scopes=ALL),
    ]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    bus, jobs, hub, fake, clock = (
        InMemoryBus(), InMemoryJobStore(), JobEventHub(), FakeRegistry(), FakeClock()
    )  # fmt: skip
    registry = RegistryClient("http://registry.test", transport=httpx.MockTransport(fake.handle))
    gateway = Gateway(
        jobs=jobs, publisher=bus, hub=hub, registry=registry, keys=KeyRing(key_configs()),
        limiter=RateLimiter(rate=1.0, burst=1000, clock=clock), sse_ping_s=0,
    )  # fmt: skip
    transport = httpx.ASGITransport(app=create_app(gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield Env(gateway, bus, jobs, hub, fake, clock, client)
    await registry.close()


def digits_spec(**overrides: Any) -> dict[str, Any]:
    """A valid JobSpec as JSON."""
    return {
        "mode": "federated", "model": "mlp", "dataset": "digits", "rounds": 3,
        "clients_per_round": 3, "min_clients": 2, **overrides,
    }  # fmt: skip


@pytest.fixture
def spec() -> Callable[..., dict[str, Any]]:
    return digits_spec
