"""Settings come from FEDBUS_* variables and the .env file; production refuses insecure values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from fedbus.bus.signing import generate_key, public_key_b64
from fedbus.settings import Environment, FedbusSettings, KafkaSecurityProtocol, load_settings


def test_environment_variables_override_the_env_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("FEDBUS_KAFKA_BOOTSTRAP_SERVERS=file:1\nFEDBUS_MINIO_BUCKET=from-file\n")
    monkeypatch.setenv("FEDBUS_ENV_FILE", str(env_file))
    monkeypatch.setenv("FEDBUS_KAFKA_BOOTSTRAP_SERVERS", "env:2")

    cfg: FedbusSettings = load_settings()

    assert cfg.kafka_bootstrap_servers == "env:2"
    assert cfg.minio_bucket == "from-file"


def test_env_file_is_found_in_a_parent_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("FEDBUS_MINIO_BUCKET=parent\n")
    child = tmp_path / "a" / "b"
    child.mkdir(parents=True)
    monkeypatch.delenv("FEDBUS_ENV_FILE", raising=False)
    monkeypatch.delenv("FEDBUS_MINIO_BUCKET", raising=False)
    monkeypatch.chdir(child)

    assert load_settings().minio_bucket == "parent"


def test_production_refuses_plaintext_and_empty_secrets() -> None:
    with pytest.raises(ValidationError) as err:
        FedbusSettings(_env_file=None, env=Environment.PRODUCTION)  # type: ignore[call-arg]

    message = str(err.value)
    assert "Kafka security protocol is PLAINTEXT" in message
    assert "MinIO endpoint is not https" in message
    assert "PostgreSQL DSN is empty" in message
    assert "FEDBUS_SIGNING_KEY_FILE is not set" in message
    assert "FEDBUS_ROOT_PUBLIC_KEYS is empty" in message


def test_production_refuses_to_turn_signature_checks_off() -> None:
    with pytest.raises(ValidationError, match="FEDBUS_REQUIRE_SIGNATURES is off"):
        FedbusSettings(  # type: ignore[call-arg]
            _env_file=None, env=Environment.PRODUCTION, require_signatures=False
        )


def test_signatures_are_required_by_default_outside_development() -> None:
    required = {
        env: FedbusSettings(_env_file=None, env=env, **_SECURE).signatures_required  # type: ignore[call-arg]
        for env in Environment
    }
    assert required == {
        Environment.DEVELOPMENT: False, Environment.TEST: False, Environment.PRODUCTION: True
    }  # fmt: skip
    forced = FedbusSettings(_env_file=None, require_signatures=True)  # type: ignore[call-arg]
    assert forced.signatures_required


_SECURE: dict[str, Any] = {
    "kafka_security_protocol": KafkaSecurityProtocol.SASL_SSL,
    "minio_endpoint": "https://minio.example:9000",
    "minio_secret_key": SecretStr("s3cret"),
    "postgres_dsn": SecretStr("postgresql://u:p@db/fedbus"),
    "signing_key_file": Path("/run/secrets/fedbus-signing/key.pem"),
    "root_public_keys": public_key_b64(generate_key()),
}


def test_production_accepts_tls_and_secrets() -> None:
    cfg = FedbusSettings(
        _env_file=None,  # type: ignore[call-arg]
        env=Environment.PRODUCTION,
        kafka_security_protocol=KafkaSecurityProtocol.SASL_SSL,
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password=SecretStr("pw"),
        minio_endpoint="https://minio.example:9000",
        minio_secret_key=SecretStr("s3cret"),
        postgres_dsn=SecretStr("postgresql://u:p@db/fedbus"),
        signing_key_file=Path("/run/secrets/fedbus-signing/key.pem"),
        root_public_keys=public_key_b64(generate_key()),
    )

    opts = cfg.kafka_client_options()

    assert opts["security_protocol"] == "SASL_SSL"
    assert opts["sasl_plain_password"] == "pw"
    assert "ssl_context" in opts
