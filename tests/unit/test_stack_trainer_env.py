"""stack.py's trainer env file: everything a trainer needs, no DSN and no MinIO keys."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.unit.test_stack_kafka_auth import load_stack

SECRETS = ("FEDBUS_POSTGRES_DSN", "FEDBUS_MINIO_ACCESS_KEY", "FEDBUS_MINIO_SECRET_KEY")


@pytest.mark.parametrize("auth", ["scram", "none"])
def test_a_trainer_env_file_is_complete_and_holds_no_storage_or_database_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, auth: str
) -> None:
    stack = load_stack(monkeypatch, tmp_path, auth)
    stack.write_env()  # what `up` writes first
    password = stack.principal_password("trainer-site-a") if auth == "scram" else None

    path = stack.write_trainer_env("site-a", password)

    env = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    stack_env = dict(line.split("=", 1) for line in stack.env_lines() if "=" in line)
    assert path == tmp_path / "principals" / "trainer-site-a.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert env["FEDBUS_CLIENT_ID"] == "site-a"
    for name in ("FEDBUS_KAFKA_BOOTSTRAP_SERVERS", "FEDBUS_KAFKA_SECURITY_PROTOCOL",
                 "FEDBUS_ARTIFACT_KEYS_FILE", "FEDBUS_STATE_DIR"):  # fmt: skip
        assert env[name] == stack_env[name]
    for name in SECRETS:
        assert name not in env
        assert stack_env[name] not in path.read_text()
    if auth == "scram":
        assert env["FEDBUS_KAFKA_SASL_USERNAME"] == "trainer-site-a"
        assert env["FEDBUS_KAFKA_SASL_PASSWORD"] == password
        assert stack.principal_password("trainer-site-a") == password  # kept when read again
    else:
        assert "FEDBUS_KAFKA_SASL_USERNAME" not in env
    if stack.tls_on():
        assert env["FEDBUS_MINIO_CA_FILE"] == env["FEDBUS_KAFKA_SSL_CAFILE"] == str(stack.TLS_CA)


def test_a_stack_env_file_without_artifact_keys_gives_the_trainer_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = load_stack(monkeypatch, tmp_path, "none")
    (tmp_path / "test.env").write_text("FEDBUS_ENV=development\n")  # written before keys existed

    text = stack.write_trainer_env("site-a", None).read_text()

    assert "FEDBUS_ARTIFACT_KEY" not in text  # the session's own key reaches it instead
    assert not (tmp_path / "artifact-keys").exists()  # and no keyring of its own is made


def test_the_trainer_id_dlq_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stack = load_stack(monkeypatch, tmp_path, "scram")

    with pytest.raises(stack.StackError, match="reserved"):
        stack.cmd_principal(["trainer", "dlq"])
    with pytest.raises(stack.StackError, match="letters"):
        stack.cmd_principal(["trainer", "../x"])
