"""Configuration shared by every fedbus process, read from ``FEDBUS_*`` environment variables.

``make up`` writes a ``.env`` file at the repository root with the local stack's endpoints and
generated credentials; :func:`load_settings` reads it too (real environment variables win).
Each service subclasses :class:`FedbusSettings` with its own fields and builds it through
:func:`load_settings`, never at import time.
"""

from __future__ import annotations

import os
import ssl
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "Environment",
    "FedbusSettings",
    "InsecureSettingsError",
    "KafkaSecurityProtocol",
    "load_settings",
]

S = TypeVar("S", bound="FedbusSettings")


class Environment(StrEnum):
    """Where the process runs; outside ``development`` and ``test`` insecure values are refused."""

    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class KafkaSecurityProtocol(StrEnum):
    """Kafka's ``security.protocol`` values."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class InsecureSettingsError(ValueError):
    """Raised when a production process is configured with an insecure value."""


class FedbusSettings(BaseSettings):
    """Settings every fedbus process shares: Kafka, MinIO, PostgreSQL, telemetry, logging."""

    model_config = SettingsConfigDict(
        env_prefix="FEDBUS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Environment = Environment.DEVELOPMENT
    service_name: str = "fedbus"

    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    kafka_security_protocol: KafkaSecurityProtocol = KafkaSecurityProtocol.PLAINTEXT
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = Field(
        default=None,
        description=(
            "A CA bundle the broker's certificate must chain to (FEDBUS_KAFKA_SSL_CAFILE) with "
            "SSL or SASL_SSL; unset: the system's CAs. `make up` sets the local CA."
        ),
    )
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_fetch_max_wait_ms: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description=(
            "How long the broker may hold a consumer's fetch when no record is there "
            "(FEDBUS_KAFKA_FETCH_MAX_WAIT_MS). It answers as soon as one arrives, so a long "
            "wait costs an idle consumer little CPU; but aiokafka fetches a partition whose "
            "records are still being handled only after the fetch in flight returns, so a "
            "consumer of bursts with slow handlers (the aggregator) wants it short."
        ),
    )

    minio_endpoint: str = "http://127.0.0.1:19000"
    minio_access_key: str = ""
    minio_secret_key: SecretStr = SecretStr("")
    minio_bucket: str = "fedbus"
    minio_ca_file: Path | None = Field(
        default=None,
        description=(
            "A CA bundle that MinIO's certificate must chain to (FEDBUS_MINIO_CA_FILE), for "
            "boto3 and for presigned URLs; unset: the system's CAs. `make up` sets the local CA."
        ),
    )
    minio_region: str = "us-east-1"
    minio_session_token: SecretStr | None = Field(
        default=None,
        description=(
            "The session token of temporary MinIO credentials (FEDBUS_MINIO_SESSION_TOKEN), "
            "such as the auditor's read-only ones from `stack.py principal auditor`; unset: "
            "the access key is a user's own."
        ),
    )

    @field_validator(
        "kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile", "minio_ca_file",
        mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_tls_file_is_unset(cls, value: object) -> object:
        # FEDBUS_MINIO_CA_FILE= must mean "the system's CAs", not the directory ".".
        return None if value == "" else value

    postgres_dsn: SecretStr = SecretStr("")

    artifact_keys: SecretStr | None = Field(
        default=None,
        description=(
            "Keys that encrypt artifacts at rest (FEDBUS_ARTIFACT_KEYS): 'id:base64key,...', "
            "16, 24 or 32 bytes each. Required in production, with or instead of "
            "FEDBUS_ARTIFACT_KEYS_FILE; see fedbus.storage.keys."
        ),
    )
    artifact_keys_file: Path | None = Field(
        default=None,
        description=(
            "A mounted secret with artifact keys (FEDBUS_ARTIFACT_KEYS_FILE): a file of "
            "'id: base64key' lines or a directory of files named by key id."
        ),
    )
    artifact_key_id: str | None = Field(
        default=None,
        description=(
            "The id of the key new artifacts are encrypted with (FEDBUS_ARTIFACT_KEY_ID); "
            "needed with more than one key. The others still decrypt what they wrote."
        ),
    )

    @field_validator("artifact_keys", "artifact_keys_file", "artifact_key_id", mode="before")
    @classmethod
    def _empty_artifact_setting_is_unset(cls, value: object) -> object:
        # A chart or .env that renders FEDBUS_ARTIFACT_KEYS_FILE= must not mean ".".
        return None if value == "" else value

    signing_key_file: Path | None = Field(
        default=None,
        description=(
            "This process's Ed25519 private key, PEM (FEDBUS_SIGNING_KEY_FILE): every event it "
            "publishes is signed with it (fedbus.bus.signing). `make up` makes one per "
            "principal; a chart mounts it from a secret. Required in production."
        ),
    )
    root_public_keys: str = Field(
        default="",
        description=(
            "The operator's root public keys (FEDBUS_ROOT_PUBLIC_KEYS): base64, comma "
            "separated. A key on `key.published` counts only when one of them signed it."
        ),
    )
    require_signatures: bool | None = Field(
        default=None,
        description=(
            "Dead-letter every consumed event that is not signed by a published key allowed to "
            "say it (FEDBUS_REQUIRE_SIGNATURES). Unset: on outside development and test."
        ),
    )
    keys_refresh_s: float = Field(
        default=10.0,
        gt=0,
        description=(
            "How old the consumers' copy of `key.published` may grow before they read it "
            "again (FEDBUS_KEYS_REFRESH_S): a revocation takes effect within it."
        ),
    )

    @field_validator("signing_key_file", "require_signatures", mode="before")
    @classmethod
    def _empty_signing_setting_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def signatures_required(self) -> bool:
        """Whether consumers refuse unsigned events (FEDBUS_REQUIRE_SIGNATURES, else by env)."""
        if self.require_signatures is not None:
            return self.require_signatures
        return self.env not in (Environment.DEVELOPMENT, Environment.TEST)

    def root_public_key_list(self) -> list[Any]:
        """The parsed ``root_public_keys`` (Ed25519 public keys)."""
        from fedbus.bus.signing import parse_public_key

        return [parse_public_key(k) for k in self.root_public_keys.split(",") if k.strip()]

    otel_exporter_otlp_endpoint: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")

    client_lifetime_epsilon: float | None = Field(
        default=None,
        gt=0,
        description=(
            "The deployment's cap on the epsilon one client may spend on one dataset across "
            "every job (at each job's delta): orchestration stops selecting a client a round "
            "would take past it and rejects a job no min_clients clients can afford; the "
            "privacy-accountant reports it. Unset: no cap."
        ),
    )

    @model_validator(mode="after")
    def _refuse_insecure_outside_development(self) -> FedbusSettings:
        if self.env is not Environment.PRODUCTION:
            return self
        problems = self.insecure_values()
        if problems:
            raise InsecureSettingsError("refusing to start in production: " + "; ".join(problems))
        return self

    def insecure_values(self) -> list[str]:
        """List what would be insecure in production (plaintext transport, empty secrets)."""
        problems = []
        if self.kafka_security_protocol in {
            KafkaSecurityProtocol.PLAINTEXT,
            KafkaSecurityProtocol.SASL_PLAINTEXT,
        }:
            problems.append(f"Kafka security protocol is {self.kafka_security_protocol.value}")
        if not self.minio_endpoint.startswith("https://"):
            problems.append("MinIO endpoint is not https")
        if not self.minio_secret_key.get_secret_value():
            problems.append("MinIO secret key is empty")
        if not self.postgres_dsn.get_secret_value():
            problems.append("PostgreSQL DSN is empty")
        problems += self.signing_problems()
        return problems

    def signing_problems(self) -> list[str]:
        """What keeps this process from signing and checking signatures (production needs
        both)."""
        problems = []
        if self.signing_key_file is None:
            problems.append("FEDBUS_SIGNING_KEY_FILE is not set (events would go unsigned)")
        if not self.signatures_required:
            problems.append("FEDBUS_REQUIRE_SIGNATURES is off")
        if not self.root_public_keys.strip():
            problems.append("FEDBUS_ROOT_PUBLIC_KEYS is empty (no signature could be checked)")
        return problems

    def kafka_client_options(self) -> dict[str, Any]:
        """Connection keyword arguments for aiokafka clients (security, SASL, TLS)."""
        opts: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap_servers,
            "security_protocol": self.kafka_security_protocol.value,
        }
        if self.kafka_security_protocol in {
            KafkaSecurityProtocol.SSL,
            KafkaSecurityProtocol.SASL_SSL,
        }:
            opts["ssl_context"] = self._kafka_ssl_context()
        if self.kafka_sasl_mechanism:
            opts["sasl_mechanism"] = self.kafka_sasl_mechanism
            opts["sasl_plain_username"] = self.kafka_sasl_username
            password = self.kafka_sasl_password
            opts["sasl_plain_password"] = password.get_secret_value() if password else None
        return opts

    def minio_ssl_context(self) -> ssl.SSLContext:
        """A TLS client context for MinIO and its presigned URLs (httpx, urllib).

        It trusts ``minio_ca_file`` (FEDBUS_MINIO_CA_FILE) when set, else the system's CAs;
        it always checks the certificate and the host name.
        """
        return ssl.create_default_context(
            cafile=str(self.minio_ca_file) if self.minio_ca_file else None
        )

    def _kafka_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(
            cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None
        )
        if self.kafka_ssl_certfile:
            keyfile = str(self.kafka_ssl_keyfile) if self.kafka_ssl_keyfile else None
            ctx.load_cert_chain(str(self.kafka_ssl_certfile), keyfile)
        return ctx


def load_settings(cls: type[S] = FedbusSettings, /, **overrides: Any) -> S:  # type: ignore[assignment]
    """Build settings from the environment and the ``.env`` file.

    The ``.env`` path is ``$FEDBUS_ENV_FILE`` if set, else ``.env`` in the working directory,
    else the nearest ``.env`` in a parent directory (so tests run from any sub-folder).
    """
    return cls(_env_file=_find_env_file(), **overrides)  # type: ignore[call-arg]


def _find_env_file() -> Path | None:
    explicit = os.environ.get("FEDBUS_ENV_FILE")
    if explicit:
        return Path(explicit)
    here = Path.cwd()
    for folder in (here, *here.parents):
        candidate = folder / ".env"
        if candidate.is_file():
            return candidate
    return None
