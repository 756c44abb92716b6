"""stack.py's signing keys: made once under <state>/keys/, named in the env files they sign for."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from tests.unit.test_stack_kafka_auth import load_stack


def env_of(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@pytest.mark.parametrize("auth", ["scram", "none"])
def test_every_env_file_signs_as_its_own_principal_and_requires_signatures(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, auth: str
) -> None:
    stack = load_stack(monkeypatch, tmp_path, auth)
    root = stack.ensure_root_key()  # what `up` does first

    stack_env = env_of(stack.write_env())
    service_env = env_of(stack.write_principal_env("svc-aggregator", None))
    trainer_env = env_of(stack.write_trainer_env("site-a", None))

    keys = tmp_path / "keys"
    assert len(base64.b64decode(root)) == 32  # an Ed25519 public key
    assert stack_env["FEDBUS_SIGNING_KEY_FILE"] == str(keys / "operator.pem")
    assert service_env["FEDBUS_SIGNING_KEY_FILE"] == str(keys / "svc-aggregator.pem")
    assert trainer_env["FEDBUS_SIGNING_KEY_FILE"] == str(keys / "trainer-site-a.pem")
    for env in (stack_env, trainer_env):
        assert env["FEDBUS_ROOT_PUBLIC_KEYS"] == root
        assert env["FEDBUS_REQUIRE_SIGNATURES"] == "true"
    assert "FEDBUS_KAFKA_SASL_USERNAME" not in service_env  # no password given
    assert "FEDBUS_POSTGRES_DSN" not in trainer_env
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert stat.S_IMODE((keys / "root.pem").stat().st_mode) == 0o600


def test_the_root_key_is_made_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stack = load_stack(monkeypatch, tmp_path, "none")
    first = stack.ensure_root_key()
    pem = (tmp_path / "keys" / "root.pem").read_bytes()

    assert stack.ensure_root_key() == first
    assert (tmp_path / "keys" / "root.pem").read_bytes() == pem


def test_a_published_key_is_not_published_again_unless_its_key_or_the_root_changed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack = load_stack(monkeypatch, tmp_path, "none")
    stack.ensure_root_key()
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "cluster-id").write_text("cluster-1\n")
    specs = stack.service_key_specs()
    for spec in specs:  # as `issue` leaves them: the key made, its record published
        (tmp_path / "keys" / f"{spec.name}.pem").write_text(f"key of {spec.name}\n")
    (tmp_path / "keys" / "published").write_text(
        "".join(stack._published_line(s) + "\n" for s in specs)
    )

    assert stack.unpublished(specs) == []
    assert [s.principal for s in specs] == ["admin"] + [f"svc-{s}" for s in stack.SERVICES]
    assert [s.role for s in specs] == ["operator", *stack.SERVICES]

    (tmp_path / "keys" / "svc-gateway.pem").write_text("a new key\n")
    assert [s.name for s in stack.unpublished(specs)] == ["svc-gateway"]
    (tmp_path / "keys" / "svc-gateway.pem").unlink()
    assert [s.name for s in stack.unpublished(specs)] == ["svc-gateway"]
    (tmp_path / "keys" / "root.pem").write_text("another root\n")
    assert len(stack.unpublished(specs)) == len(specs)
    (tmp_path / "kafka" / "cluster-id").write_text("cluster-2\n")  # a new broker
    assert len(stack.unpublished(specs)) == len(specs)
