"""``fedbus models download`` of an artifact stored encrypted at rest (a presigned link serves
the FBE2 envelope; the registry's SHA-256 names the plaintext)."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import httpx
import pytest

from fedbus.storage import AesGcmCipher
from fedbus_cli import main
from fedbus_cli.commands import _gateway

WEIGHTS = b"safetensors bytes of a model" * 100
KEY = os.urandom(32)
OBJECT_KEY = f"jobs/x/round-3/global/{hashlib.sha256(WEIGHTS).hexdigest()}"


def _fake(stored: bytes) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "minio.test":
            return httpx.Response(200, content=stored)
        artifact = {
            "object_key": OBJECT_KEY,
            "size_bytes": len(WEIGHTS),
            "sha256": hashlib.sha256(WEIGHTS).hexdigest(),
        }
        url = f"http://minio.test/fedbus/{OBJECT_KEY}?X-Amz-Signature=s"
        return httpx.Response(200, json={"artifact": artifact, "download_url": url})

    return httpx.MockTransport(handle)


@pytest.fixture(autouse=True)
def stored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> bytes:
    body = AesGcmCipher(KEY, key_id="k1").encrypt(WEIGHTS, associated=OBJECT_KEY.encode())
    monkeypatch.setattr(_gateway, "TRANSPORT", _fake(body))
    monkeypatch.setenv("FEDBUS_GATEWAY_URL", "http://gw.test")
    monkeypatch.setenv("FEDBUS_API_KEY", "k-1")
    empty = tmp_path / "empty.env"
    empty.write_text("")
    monkeypatch.setenv("FEDBUS_ENV_FILE", str(empty))  # not the repository's .env
    monkeypatch.delenv("FEDBUS_ARTIFACT_KEYS", raising=False)
    monkeypatch.delenv("FEDBUS_ARTIFACT_KEYS_FILE", raising=False)
    return body


def test_a_key_holder_gets_the_plaintext_checked_against_its_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDBUS_ARTIFACT_KEYS", f"k1:{base64.b64encode(KEY).decode()}")
    out = tmp_path / "out" / "model.safetensors"

    code = main(["models", "download", "mlp-digits", "3", "-o", str(out)])

    assert code == 0
    assert out.read_bytes() == WEIGHTS


def test_without_the_key_nothing_is_written_and_the_setting_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out" / "model.safetensors"

    code = main(["models", "download", "mlp-digits", "3", "-o", str(out)])

    assert code == 2
    assert "FEDBUS_ARTIFACT_KEYS" in capsys.readouterr().err
    assert list(out.parent.iterdir()) == []


def test_with_another_key_under_the_same_id_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEDBUS_ARTIFACT_KEYS", f"k1:{base64.b64encode(os.urandom(32)).decode()}")
    out = tmp_path / "out" / "model.safetensors"

    code = main(["models", "download", "mlp-digits", "3", "-o", str(out)])

    assert code == 2
    assert "cannot decrypt" in capsys.readouterr().err
    assert list(out.parent.iterdir()) == []
