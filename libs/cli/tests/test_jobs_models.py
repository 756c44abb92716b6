"""``fedbus models ...`` against a fake gateway and a fake object store link."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from fedbus_cli import main
from fedbus_cli.commands import _gateway

WEIGHTS = b"safetensors bytes of a model" * 100


def _fake(sha256: str, seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "minio.test":
            return httpx.Response(200, content=WEIGHTS)
        if request.url.path == "/v1/models":
            models = [{"name": "mlp-digits", "latest_version": 2, "updated_at": "2025-03-14"}]
            return httpx.Response(200, json={"tenant": "acme", "models": models})
        if request.url.path == "/v1/models/mlp-digits/versions/2":
            url = "http://minio.test/fedbus/jobs/x?X-Amz-Signature=s"
            artifact = {"object_key": "jobs/x", "size_bytes": len(WEIGHTS), "sha256": sha256}
            body = {"name": "mlp-digits", "version": 2, "artifact": artifact, "download_url": url}
            return httpx.Response(200, json=body)
        return httpx.Response(404, json={"detail": "no model 'other'"})

    return httpx.MockTransport(handle)


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    requests: list[httpx.Request] = []
    good = hashlib.sha256(WEIGHTS).hexdigest()
    monkeypatch.setattr(_gateway, "TRANSPORT", _fake(good, requests))
    monkeypatch.setenv("FEDBUS_GATEWAY_URL", "http://gw.test")
    monkeypatch.setenv("FEDBUS_API_KEY", "k-1")
    return requests


def test_download_writes_the_file_when_the_sha256_matches(
    seen: list[httpx.Request], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "models" / "mlp-digits-v2.safetensors"

    code = main(["models", "download", "mlp-digits", "2", "-o", str(out)])

    assert code == 0
    assert out.read_bytes() == WEIGHTS
    assert "wrote" in capsys.readouterr().out
    minio = [r for r in seen if r.url.host == "minio.test"]
    assert "authorization" not in minio[0].headers  # the API key stays with the gateway


def test_download_refuses_a_file_with_the_wrong_sha256(
    seen: list[httpx.Request], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setattr(_gateway, "TRANSPORT", _fake("00" * 32, seen))
    out = tmp_path / "m.safetensors"

    code = main(["models", "download", "mlp-digits", "2", "-o", str(out)])

    assert code == 1
    assert "SHA-256 mismatch" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_list_and_unknown_versions(
    seen: list[httpx.Request], capsys: pytest.CaptureFixture[str]
) -> None:
    listed = main(["models", "list"])
    listed_out = capsys.readouterr().out.strip().splitlines()
    unknown = main(["models", "versions", "other"])

    assert listed == 0
    assert listed_out[1].split() == ["mlp-digits", "2", "2025-03-14"]
    assert unknown == 2
    assert "HTTP 404: no model 'other'" in capsys.readouterr().err
