"""The app over the gateway's fakes, with an HTTP client on it (no Kafka, no PostgreSQL)."""

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
from fedbus_gateway.adapters import RegistryClient

from .fakes import FakeClock, FakeJobStore, FakeRegistry

ALL = [Scope.JOBS_WRITE, Scope.JOBS_READ, Scope.MODELS_READ, Scope.MODELS_PREDICT]
KEYS = {
    "acme": "acme-secret-key",
    "acme-reader": "acme-read-only",
    "globex": "globex-secret-key",
    "hashed": "stored-as-a-hash",
}


@dataclass
class Env:
    """The app with its fakes."""

    gateway: Gateway
    bus: InMemoryBus
    jobs: FakeJobStore
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
        InMemoryBus(), FakeJobStore(), JobEventHub(), FakeRegistry(), FakeClock()
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
