"""Gateway settings: API keys, an OIDC issuer, rate limits, the registry (``FEDBUS_*``)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field, SecretStr, model_validator

from fedbus.settings import FedbusSettings
from fedbus_gateway.predict.serving import DatasetFacts

__all__ = ["DEFAULT_MAX_BODY_BYTES", "OIDC_ALGORITHMS", "ApiKeyConfig", "GatewaySettings", "Scope"]

DEFAULT_MAX_BODY_BYTES = 2**20
"""1 MiB, a little over the bus's largest event (``fedbus.events.MAX_EVENT_BYTES``, 1,000,000
bytes): an event carries the whole spec, so a much larger body can never be published; the
rest leaves room for JSON whitespace."""

OIDC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""The asymmetric JWS algorithms a token may be signed with: never ``none``, never ``HS*``
(an HMAC "signed" with the issuer's public key would verify against it)."""


class Scope(StrEnum):
    """What an API key may do."""

    JOBS_WRITE = "jobs:write"
    JOBS_READ = "jobs:read"
    MODELS_READ = "models:read"
    MODELS_PREDICT = "models:predict"


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
    gateway_oidc_issuer: str | None = None
    """The OIDC issuer whose JWTs are accepted as bearer tokens (its ``iss``); unset: none."""
    gateway_oidc_audience: str | None = None
    """The ``aud`` a token must carry (the gateway's client id or API identifier)."""
    gateway_oidc_jwks_url: str | None = Field(default=None, pattern=r"^https?://")
    """Where the issuer's signing keys are (its ``jwks_uri``)."""
    gateway_oidc_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    """Allowed token algorithms, a subset of :data:`OIDC_ALGORITHMS`."""
    gateway_oidc_tenant_claim: str = Field(default="tenant", min_length=1)
    """The claim naming the caller's tenant (may be namespaced, e.g. ``https://x/tenant``)."""
    gateway_oidc_scope_claim: str = Field(default="scope", min_length=1)
    """The claim with the scopes: a space-separated string (``scope``) or a list (``scp``)."""
    gateway_oidc_leeway_s: float = Field(default=30.0, ge=0, le=300)
    """Clock skew tolerated on ``exp``, ``nbf`` and ``iat``."""
    gateway_oidc_jwks_lifespan_s: float = Field(default=300.0, gt=0)
    """How long fetched keys are used before the JWKS is fetched again."""
    gateway_oidc_jwks_min_refetch_s: float = Field(default=30.0, ge=0)
    """At most one JWKS fetch per this many seconds, however many unknown ``kid``s arrive."""
    gateway_oidc_jwks_timeout_s: float = Field(default=5.0, gt=0)
    gateway_oidc_token_cache_s: float = Field(default=30.0, ge=0, le=3600)
    """How long a verified JWT's principal is reused (never past its expiry); 0: never."""
    gateway_predict_max_rows: int = Field(default=256, ge=1, le=100_000)
    """Rows one ``:predict`` request may send; more is 413."""
    gateway_predict_batch_rows: int = Field(default=64, ge=1, le=100_000)
    """Rows one forward pass takes at most: concurrent requests are batched up to this."""
    gateway_predict_batch_wait_ms: float = Field(default=0.0, ge=0, le=1000)
    """How long a batch of fewer than ``batch_rows`` rows waits for more; 0: a batch runs as
    soon as the model is free, with whatever arrived meanwhile."""
    gateway_predict_cache_models: int = Field(default=4, ge=1, le=1000)
    """Model versions kept loaded for predictions (least recently used is unloaded first)."""
    gateway_predict_torch_threads: int | None = Field(default=1, ge=1, le=1024)
    """torch's intra-op threads for forward passes; null: one per core (torch's default)."""
    gateway_predict_datasets: dict[str, DatasetFacts] = Field(default_factory=dict)
    """JSON ``{"<dataset>": {"feature_shape": [...], "classes": [...]}}``: datasets beyond
    the built-in ones (mnist, fashion-mnist, digits) whose models can be served."""
    registry_url: str = "http://127.0.0.1:8081"
    registry_timeout_s: float = Field(default=10.0, gt=0)
    sse_ping_s: float = Field(default=15.0, ge=0)

    @model_validator(mode="after")
    def _oidc_complete(self) -> GatewaySettings:
        oidc = [self.gateway_oidc_issuer, self.gateway_oidc_audience, self.gateway_oidc_jwks_url]
        if any(oidc) and not all(oidc):
            raise ValueError(
                "an OIDC issuer needs all of FEDBUS_GATEWAY_OIDC_ISSUER, "
                "FEDBUS_GATEWAY_OIDC_AUDIENCE and FEDBUS_GATEWAY_OIDC_JWKS_URL"
            )
        refused = [a for a in self.gateway_oidc_algorithms if a not in OIDC_ALGORITHMS]
        if refused or not self.gateway_oidc_algorithms:
            raise ValueError(
                f"FEDBUS_GATEWAY_OIDC_ALGORITHMS: {refused or 'none given'} not allowed; "
                f"choose from {sorted(OIDC_ALGORITHMS)}"
            )
        return self

    def insecure_values(self) -> list[str]:
        """The shared checks plus: no API key or issuer configured, a JWKS over plain http."""
        problems = super().insecure_values()
        if not self.gateway_api_keys and not self.gateway_oidc_issuer:
            problems.append(
                "no gateway API keys (FEDBUS_GATEWAY_API_KEYS) or OIDC issuer configured"
            )
        if self.gateway_oidc_jwks_url and not self.gateway_oidc_jwks_url.startswith("https://"):
            problems.append("the OIDC JWKS URL is not https")
        return problems
