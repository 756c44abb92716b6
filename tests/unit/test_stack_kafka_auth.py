"""deploy/local/stack.py's Kafka authentication choices, without starting anything."""

from __future__ import annotations

import importlib.util
import stat
import sys
from pathlib import Path
from types import ModuleType

import pytest

STACK = Path(__file__).resolve().parents[2] / "deploy" / "local" / "stack.py"


def load_stack(monkeypatch: pytest.MonkeyPatch, state: Path, auth: str | None) -> ModuleType:
    """A fresh import of stack.py for state directory ``state`` (its paths are module-level)."""
    monkeypatch.setenv("FEDBUS_STATE_DIR", str(state))
    monkeypatch.setenv("FEDBUS_ENV_FILE", str(state / "test.env"))
    monkeypatch.delenv("FEDBUS_TLS", raising=False)
    if auth is None:
        monkeypatch.delenv("FEDBUS_KAFKA_AUTH", raising=False)
    else:
        monkeypatch.setenv("FEDBUS_KAFKA_AUTH", auth)
    spec = importlib.util.spec_from_file_location("fedbus_stack_under_test", STACK)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_a_new_state_directory_gets_scram_and_the_env_file_holds_admin(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = load_stack(monkeypatch, tmp_path, None)

    env = dict(line.split("=", 1) for line in stack.env_lines() if "=" in line)

    assert stack.kafka_auth() == "scram"
    assert env["FEDBUS_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["FEDBUS_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-256"
    assert env["FEDBUS_KAFKA_SASL_USERNAME"] == "admin"
    assert env["FEDBUS_KAFKA_SASL_PASSWORD"] == stack.kafka_admin_password()
    assert stack.write_env() == tmp_path / "test.env"


def test_a_broker_formatted_before_the_setting_stays_plaintext(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "kafka" / "data").mkdir(parents=True)
    (tmp_path / "kafka" / "data" / "meta.properties").write_text("node.id=1\n")
    stack = load_stack(monkeypatch, tmp_path, "scram")

    assert stack.kafka_auth() == "none"
    assert stack.tls_mode() == "off"
    assert "FEDBUS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT" in stack.env_lines()


def test_an_unknown_choice_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stack = load_stack(monkeypatch, tmp_path, "kerberos")

    with pytest.raises(stack.StackError, match="FEDBUS_KAFKA_AUTH"):
        stack.kafka_auth()


def test_principal_passwords_are_random_private_and_stable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = load_stack(monkeypatch, tmp_path, None)

    first = stack.principal_password("svc-gateway")
    other = stack.principal_password("svc-orchestration")
    path = tmp_path / "principals" / "svc-gateway.env"

    assert stack.principal_password("svc-gateway") == first
    assert first != other
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert "FEDBUS_KAFKA_SASL_USERNAME=svc-gateway" in path.read_text()


def test_every_service_is_bootstrapped_with_scram(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = load_stack(monkeypatch, tmp_path, None)

    args = stack.scram_bootstrap_users()
    users = {a.split("name=")[1].split(",")[0] for a in args if a.startswith("SCRAM")}

    assert users == {"admin", *(f"svc-{s}" for s in stack.SERVICES)}


def test_logged_commands_do_not_show_passwords(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = load_stack(monkeypatch, tmp_path, None)
    log = tmp_path / "cmd.log"

    stack.run_logged("kafka", ["true", "SCRAM-SHA-256=[name=admin,password=s3cret]"], log)

    assert "s3cret" not in log.read_text()
    assert "password=***" in log.read_text()


@pytest.mark.parametrize("ident", ["../evil", "a/b", "", "x y", "-dash-first"])
def test_a_principal_id_that_could_leave_the_state_directory_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ident: str
) -> None:
    stack = load_stack(monkeypatch, tmp_path, None)
    created: list[str] = []
    monkeypatch.setattr(stack, "add_scram_user", created.append)

    with pytest.raises(stack.StackError, match="letters, digits"):
        stack.cmd_principal(["trainer", ident])

    assert created == []
    assert not (tmp_path.parent / "evil.env").exists()
