"""A trainer's settings: no storage or database secret needed, a client id that names a topic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from fedbus.bus.signing import generate_key, public_key_b64
from fedbus.settings import Environment, KafkaSecurityProtocol
from fedbus_trainer.main import startup
from fedbus_trainer.settings import TrainerSettings


@pytest.mark.parametrize("client_id", ["dlq", "../evil", "a b", "-x", "x" * 101])
def test_a_client_id_that_cannot_name_its_topic_is_refused_at_start(
    client_id: str, client_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        startup([f"--client-id={client_id}", "--data", f"d={client_file}", "--device", "cpu"])

    assert ended.value.code == 2
    assert "client_id" in capsys.readouterr().err


def test_a_production_trainer_needs_no_minio_credentials_and_no_dsn(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("FEDBUS_MINIO_ACCESS_KEY", "FEDBUS_MINIO_SECRET_KEY", "FEDBUS_POSTGRES_DSN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FEDBUS_ENV_FILE", str(tmp_path / "none.env"))  # no .env read at all

    settings = TrainerSettings(  # type: ignore[call-arg]
        _env_file=None, env=Environment.PRODUCTION, client_id="site-a",
        kafka_security_protocol=KafkaSecurityProtocol.SASL_SSL, minio_endpoint="http://ignored",
        signing_key_file=tmp_path / "key.pem", root_public_keys=public_key_b64(generate_key()),
    )  # fmt: skip

    assert settings.insecure_values() == []
    assert settings.minio_secret_key.get_secret_value() == ""
    assert settings.postgres_dsn.get_secret_value() == ""
    with pytest.raises(ValidationError, match="Kafka security protocol is SASL_PLAINTEXT"):
        TrainerSettings(  # type: ignore[call-arg]
            _env_file=None, env=Environment.PRODUCTION, client_id="site-a",
            kafka_security_protocol=KafkaSecurityProtocol.SASL_PLAINTEXT,
        )  # fmt: skip


def test_a_trainer_with_its_own_env_file_reads_no_other(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, client_file: Path
) -> None:
    (tmp_path / ".env").write_text("FEDBUS_POSTGRES_DSN=postgresql://u:secret@h/db\n")
    own = tmp_path / "trainer-a.env"
    own.write_text("FEDBUS_CLIENT_ID=a\nFEDBUS_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:1\n")
    monkeypatch.chdir(tmp_path)  # a .env right here, as in the repository
    monkeypatch.setenv("FEDBUS_ENV_FILE", str(own))
    monkeypatch.delenv("FEDBUS_POSTGRES_DSN", raising=False)

    settings, _, _ = startup(["--data", f"d={client_file}", "--device", "cpu"])

    assert settings.client_id == "a"
    assert settings.postgres_dsn.get_secret_value() == ""


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("minio_secret_key", "root-secret", "FEDBUS_MINIO_SECRET_KEY"),
        ("minio_access_key", "root", "FEDBUS_MINIO_ACCESS_KEY"),
        ("postgres_dsn", "postgresql://fedbus:pw@db/fedbus", "FEDBUS_POSTGRES_DSN"),
    ],
)
def test_a_production_trainer_given_the_operators_credentials_refuses_to_start(
    field: str, value: str, named: str
) -> None:
    given: dict[str, Any] = {field: value}
    with pytest.raises(ValidationError) as refused:
        TrainerSettings(  # type: ignore[call-arg]
            _env_file=None, env=Environment.PRODUCTION, client_id="site-a",
            kafka_security_protocol=KafkaSecurityProtocol.SASL_SSL, **given,
        )  # fmt: skip

    assert named in str(refused.value)
    assert value not in str(refused.value)  # named, never shown


def test_a_development_trainer_run_with_the_stacks_env_file_says_what_it_holds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, client_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    stack_env = tmp_path / ".env"
    stack_env.write_text(
        "FEDBUS_MINIO_SECRET_KEY=root-secret\nFEDBUS_KAFKA_SASL_USERNAME=admin\n"
        "FEDBUS_POSTGRES_DSN=postgresql://u:pw@h/db\n"
    )
    monkeypatch.setenv("FEDBUS_ENV_FILE", str(stack_env))
    for name in ("FEDBUS_MINIO_ACCESS_KEY", "FEDBUS_MINIO_SECRET_KEY", "FEDBUS_POSTGRES_DSN"):
        monkeypatch.delenv(name, raising=False)

    startup(["--client-id", "a", "--data", f"d={client_file}", "--device", "cpu"])

    err = capsys.readouterr().err
    assert "FEDBUS_MINIO_SECRET_KEY" in err
    assert "FEDBUS_POSTGRES_DSN" in err
    assert "admin, not trainer-a" in err
    assert "root-secret" not in err
