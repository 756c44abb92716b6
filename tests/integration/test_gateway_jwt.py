"""JWT bearer tokens against a real gateway process, its issuer's JWKS served over HTTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fedbus.settings import FedbusSettings
from tests.integration.gateway_process import running_gateway
from tests.integration.harness import unique
from tests.integration.test_gateway_bad_spec import SPEC, published_job_requests

AUDIENCE = "fedbus-gateway"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class JwksServer:
    """A test issuer: ``/jwks.json`` on a free local port, served by a thread."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {
            "k1": rsa.generate_private_key(public_exponent=65537, key_size=2048)
        }
        self.fetches = 0
        self.issuer = f"https://{unique('issuer')}.test"
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/jwks.json":
                    self.send_error(404)
                    return
                served.fetches += 1
                body = json.dumps(served.jwks()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key in list(self.keys.items()):
            public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            keys.append({**public, "kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": keys}

    def claims(self, tenant: str, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": AUDIENCE, "sub": "alice", "iat": now,
                  "exp": now + 300, "tenant": tenant, "scope": "jobs:write jobs:read"}  # fmt: skip
        return {**claims, **overrides}

    def mint(self, tenant: str, kid: str = "k1", **overrides: Any) -> str:
        claims = self.claims(tenant, **overrides)
        return jwt.encode(claims, self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def gateway_env(self, **extra: str) -> dict[str, str]:
        return {"FEDBUS_GATEWAY_OIDC_ISSUER": self.issuer,
                "FEDBUS_GATEWAY_OIDC_AUDIENCE": AUDIENCE,
                "FEDBUS_GATEWAY_OIDC_JWKS_URL": self.url, **extra}  # fmt: skip


@pytest.fixture
def issuer() -> Iterator[JwksServer]:
    server = JwksServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def _unsigned(claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "none", "kid": "k1", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _hs256_with_public_key(issuer: JwksServer, claims: dict[str, Any]) -> str:
    pem = (
        issuer.keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = _b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    signing_input = f"{header}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())}"


async def test_a_token_submits_as_its_tenant_and_bad_tokens_get_401_or_403(
    settings: FedbusSettings, tmp_path: Path, issuer: JwksServer
) -> None:
    tenant = unique("tenant-oidc")
    bad = {
        "expired": issuer.mint(tenant, exp=int(time.time()) - 600),
        "wrong audience": issuer.mint(tenant, aud="another-api"),
        "wrong issuer": issuer.mint(tenant, iss="https://evil.test"),
        "unsigned": _unsigned(issuer.claims(tenant)),
        "HS256 with the public key": _hs256_with_public_key(issuer, issuer.claims(tenant)),
    }
    reader = issuer.mint(tenant, scope="jobs:read")
    async with (
        running_gateway(settings, tmp_path, env=issuer.gateway_env()) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as client,
        published_job_requests(settings) as published,
    ):
        good = {"Authorization": f"Bearer {issuer.mint(tenant)}"}
        created = await client.post("/v1/jobs", json={"spec": SPEC}, headers=good)
        listed = await client.get("/v1/jobs", headers=good)
        refused = {
            kind: await client.post(
                "/v1/jobs", json={"spec": SPEC}, headers={"Authorization": f"Bearer {token}"}
            )
            for kind, token in bad.items()
        }
        scope = await client.post(
            "/v1/jobs", json={"spec": SPEC}, headers={"Authorization": f"Bearer {reader}"}
        )
        api_key = await client.get("/v1/jobs", headers=gateway.auth("a"))
        log = gateway.proc.text()

    assert created.status_code == 202, created.text
    job_id = created.json()["job_id"]
    assert [j["job_id"] for j in listed.json()["jobs"]] == [job_id]
    mine = [e for e in published if e.tenant == tenant]
    assert [e.job_id for e in mine] == [job_id]
    for kind, reply in refused.items():
        assert reply.status_code == 401, (kind, reply.text)
        assert reply.json()["detail"].startswith("invalid token: "), kind
    assert scope.status_code == 403
    assert "jobs:write" in scope.json()["detail"]
    assert api_key.status_code == 200  # API keys keep working beside the issuer
    assert issuer.fetches == 1
    for token in bad.values():
        assert token not in log


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_rotated_key_is_fetched_and_random_kids_do_not_flood_the_issuer(
    settings: FedbusSettings, tmp_path: Path, issuer: JwksServer
) -> None:
    tenant = unique("tenant-oidc")
    env = issuer.gateway_env(FEDBUS_GATEWAY_OIDC_JWKS_MIN_REFETCH_S="1",
                             FEDBUS_GATEWAY_AUTH_FAILURES="1000")  # fmt: skip
    async with (
        running_gateway(settings, tmp_path, env=env) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as client,
    ):
        first = await client.get("/v1/jobs", headers=_bearer(issuer.mint(tenant)))
        issuer.keys["k2"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        rotated = _bearer(issuer.mint(tenant, kid="k2"))
        deadline, answer = time.monotonic() + 20, 0
        while answer != 200 and time.monotonic() < deadline:  # until the refetch interval ends
            answer = (await client.get("/v1/jobs", headers=rotated)).status_code
            await asyncio.sleep(0.1)
        before_flood, started = issuer.fetches, time.monotonic()
        flood = set()
        for _ in range(100):  # valid signatures, each under a kid the issuer never published
            token = jwt.encode(issuer.claims(tenant), issuer.keys["k1"], algorithm="RS256",
                               headers={"kid": unique("kid")})  # fmt: skip
            flood.add((await client.get("/v1/jobs", headers=_bearer(token))).status_code)
        elapsed = time.monotonic() - started

    assert first.status_code == 200
    assert answer == 200
    assert flood == {401}
    assert issuer.fetches - before_flood <= 1 + int(elapsed)  # at most one per second
