"""Gateway settings: API keys, rate limits, the registry's address (``FEDBUS_*``)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field, SecretStr, model_validator

from fedbus.settings import FedbusSettings

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ApiKeyConfig", "GatewaySettings", "Scope"]

DEFAULT_MAX_BODY_BYTES = 2**20
"""1 MiB, a little over the bus's largest event (``fedbus.events.MAX_EVENT_BYTES``, 1,000,000
bytes): an event carries the whole spec, so a much larger body can never be published; the
rest leaves room for JSON whitespace."""


class Scope(StrEnum):
    """What an API key may do."""

    JOBS_WRITE = "jobs:write"
    JOBS_READ = "jobs:read"
    MODELS_READ = "models:read"


class ApiKeyConfig(BaseModel):
    """One API key: the key itself or its SHA-256 (hex), its tenant and scopes.

    Giving ``key_sha256`` instead of ``key`` lets a deployment keep no plaintext secret.
    """

    key: SecretStr | None = None
    key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    tenant: str = Field(min_length=1)
    scopes: list[Scope] = Field(default_factory=list)
    name: str | None = None
    """Who the key stands for in ``job.cancel.requested.requested_by`` (default: the tenant)."""

    @model_validator(mode="after")
    def _exactly_one_secret(self) -> ApiKeyConfig:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("an API key needs exactly one of 'key' and 'key_sha256'")
        if self.key is not None and not self.key.get_secret_value():
            raise ValueError("an API key may not be empty")
        return self


class GatewaySettings(FedbusSettings):
    """The gateway's own ``FEDBUS_*`` fields on top of the shared ones."""

    service_name: str = "gateway"
    http_port: int = Field(default=8080, ge=0, le=65535, description="0 picks a free port")
    consumer_group: str = "gateway"
    gateway_api_keys: list[ApiKeyConfig] = Field(default_factory=list)
    """JSON list of ``{"key"|"key_sha256": ..., "tenant": ..., "scopes": [...]}``."""
    gateway_rate_per_second: float = Field(default=20.0, gt=0)
    """Requests each key may make per second, on average."""
    gateway_rate_burst: int = Field(default=40, ge=1)
    """Requests a key may make at once after being idle."""
    gateway_auth_failures: int = Field(default=20, ge=1)
    """Unknown API keys a client address may send per window; past that it gets 429."""
    gateway_auth_failure_window_s: float = Field(default=60.0, gt=0)
    """The window (seconds) failed authentications are counted in, per client address."""
    gateway_max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1)
    """A larger request body gets 413 before authentication and before it is read in full."""
    registry_url: str = "http://127.0.0.1:8081"
    registry_timeout_s: float = Field(default=10.0, gt=0)
    sse_ping_s: float = Field(default=15.0, ge=0)

    def insecure_values(self) -> list[str]:
        """The shared checks plus: no API key configured."""
        problems = super().insecure_values()
        if not self.gateway_api_keys:
            problems.append("no gateway API keys configured (FEDBUS_GATEWAY_API_KEYS)")
        return problems
