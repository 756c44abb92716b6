"""JWT bearer tokens from an OIDC issuer, tried as a client and as an attacker would."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from fedbus.events import JobCancelRequested, JobRequested, JobSpec
from fedbus_gateway import GatewaySettings
from fedbus_gateway.auth import FailureLimiter
from fedbus_gateway.oidc import JwksCache, OidcConfig, OidcVerifier, looks_like_jwt

from .fakes import FakeClock
from .test_events_stream import job_events

if TYPE_CHECKING:
    from .conftest import Env

ISSUER = "https://issuer.test/realms/fedbus"
AUDIENCE = "fedbus-gateway"
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
Spec = Callable[..., dict[str, Any]]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwk(kid: str, key: PrivateKey, alg: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        public: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        public = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**public, "kid": kid, "alg": alg, "use": "sig"}


_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_EC = ec.generate_private_key(ec.SECP256R1())
_RSA_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_ATTACKER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Issuer:
    """A test OIDC issuer: its published keys, and tokens minted with them."""

    published: dict[str, tuple[PrivateKey, str]] = field(
        default_factory=lambda: {"rsa-1": (_RSA, "RS256"), "ec-1": (_EC, "ES256")}
    )
    fetches: int = 0
    down: bool = False

    async def fetch(self) -> Any:
        """The JWKS document, as the gateway's injected fetcher."""
        self.fetches += 1
        if self.down:
            raise ConnectionError("issuer unreachable")
        return {"keys": [_jwk(kid, key, alg) for kid, (key, alg) in self.published.items()]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300,
            "tenant": "acme", "scope": "openid jobs:write jobs:read",
        }  # fmt: skip
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}  # None drops a claim

    def mint(
        self, kid: str = "rsa-1", *, key: PrivateKey | None = None,
        extra: dict[str, Any] | None = None, **claims: Any,
    ) -> str:  # fmt: skip
        """A token signed with the published key ``kid`` (or ``key``), claims overridden."""
        signer, alg = self.published.get(kid, (_RSA, "RS256"))
        payload = {**self.claims(**claims), **(extra or {})}
        return jwt.encode(payload, key or signer, algorithm=alg, headers={"kid": kid})


def _unsigned(claims: dict[str, Any], kid: str = "rsa-1") -> str:
    header = _b64(json.dumps({"alg": "none", "kid": kid, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _hs256_with_public_key(claims: dict[str, Any]) -> str:
    """The key-confusion attack: HMAC "signed" with the issuer's public key as the secret."""
    pem = _RSA.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}).encode())
    signing_input = f"{header}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _swap_tenant(token: str, tenant: str) -> str:
    """The payload rewritten to name another tenant, the signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["tenant"] = tenant
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


@dataclass
class Oidc:
    issuer: Issuer
    clock: FakeClock
    cache: JwksCache

    @staticmethod
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def oidc(env: Env) -> Oidc:
    issuer, clock = Issuer(), FakeClock()
    config = OidcConfig(issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256", "ES256"])
    cache = JwksCache(issuer.fetch, algorithms=config.algorithms, lifespan_s=300,
                      min_refetch_s=30, clock=clock)  # fmt: skip
    # One clock: moving it ages the JWKS and the verified tokens alike.
    env.gateway.oidc = OidcVerifier(config, cache, clock=clock)
    return Oidc(issuer, clock, cache)


async def test_a_valid_token_submits_lists_streams_and_cancels_as_its_tenant(
    env: Env, oidc: Oidc, spec: Spec
) -> None:
    for kid in ("rsa-1", "ec-1"):
        headers = oidc.bearer(oidc.issuer.mint(kid))
        created = await env.client.post("/v1/jobs", json={"spec": spec()}, headers=headers)
        job_id = created.json()["job_id"]
        listed = await env.client.get("/v1/jobs", headers=headers)
        cancel = await env.client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)

        assert created.status_code == 202
        assert job_id in [j["job_id"] for j in listed.json()["jobs"]]
        assert cancel.status_code == 202
    for event in job_events(job_id, JobSpec.model_validate(spec())):
        await env.jobs.apply(event)
    stream = await env.client.get(f"/v1/jobs/{job_id}/events", headers=headers)

    requested = [e for e in env.bus.events("job.requested") if isinstance(e, JobRequested)]
    cancels = env.bus.events("job.cancel.requested")
    assert [e.tenant for e in requested] == ["acme", "acme"]
    assert [e.requested_by for e in cancels if isinstance(e, JobCancelRequested)] == [
        "oidc:alice", "oidc:alice",
    ]  # fmt: skip
    assert stream.status_code == 200
    [data] = [line[5:] for line in stream.text.splitlines() if line.startswith("data:")]
    assert json.loads(data)["status"] == "completed"
    assert oidc.issuer.fetches == 1  # the JWKS was fetched once and cached


def _bad_tokens() -> dict[str, tuple[Callable[[Issuer], str], str]]:
    """Each attack or mistake, and the reason the gateway gives for refusing it."""
    now = int(time.time())
    return {
        "expired": (lambda i: i.mint(exp=now - 120), "expired"),
        "wrong audience": (lambda i: i.mint(aud="another-api"), "another audience"),
        "wrong issuer": (lambda i: i.mint(iss="https://evil.test"), "another issuer"),
        "unsigned (alg none)": (lambda i: _unsigned(i.claims()), "'none' is not allowed"),
        "HS256 with the public key": (
            lambda i: _hs256_with_public_key(i.claims()),
            "'HS256' is not allowed",
        ),
        "unknown kid": (lambda i: i.mint("rsa-9", key=_ATTACKER), "not in the issuer's JWKS"),
        "RS256 under the EC key's kid": (
            lambda i: jwt.encode(i.claims(), _RSA, algorithm="RS256", headers={"kid": "ec-1"}),
            "not that of its signing key",
        ),
        "signed by another key": (lambda i: i.mint(key=_ATTACKER), "signature does not verify"),
        "tampered payload": (
            lambda i: _swap_tenant(i.mint(tenant="acme"), "globex"),
            "signature does not verify",
        ),
        "missing tenant": (lambda i: i.mint(tenant=None), "no 'tenant' claim"),
        "missing exp": (lambda i: i.mint(exp=None), "no 'exp' claim"),
        "missing sub": (lambda i: i.mint(sub=None), "no 'sub' claim"),
        "NUL in the tenant": (lambda i: i.mint(tenant="ac\x00me"), "'tenant' claim is longer"),
        "lone surrogate in sub": (lambda i: i.mint(sub="\ud800"), "'sub' claim is longer"),
        "tenant of 10,000 chars": (lambda i: i.mint(tenant="t" * 10_000), "or holds a NUL"),
        "not yet valid": (lambda i: i.mint(nbf=now + 600), "not valid yet"),
    }


@pytest.mark.parametrize("kind", list(_bad_tokens()))
async def test_bad_tokens_get_401_and_publish_nothing(
    env: Env, oidc: Oidc, spec: Spec, kind: str
) -> None:
    make, reason = _bad_tokens()[kind]

    response = await env.client.post(
        "/v1/jobs", json={"spec": spec()}, headers=oidc.bearer(make(oidc.issuer))
    )

    assert response.status_code == 401, response.text
    assert response.json()["detail"].startswith("invalid token: ")
    assert reason in response.json()["detail"]
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert env.bus.events("job.requested") == []


async def test_the_reason_is_told_and_logged_but_never_the_token(
    env: Env, oidc: Oidc, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    expired = oidc.issuer.mint(exp=int(time.time()) - 120)
    audience = oidc.issuer.mint(aud="another-api")

    first = await env.client.get("/v1/jobs", headers=oidc.bearer(expired))
    second = await env.client.get("/v1/jobs", headers=oidc.bearer(audience))

    assert first.json()["detail"] == "invalid token: the token has expired"
    assert second.json()["detail"] == "invalid token: the token is for another audience"
    assert "expired" in caplog.text
    assert "another audience" in caplog.text
    for token in (expired, audience):
        assert token not in caplog.text
        assert token.split(".")[2] not in caplog.text


async def test_a_failing_jwt_never_falls_back_to_api_keys_and_counts_as_a_failure(
    env: Env, oidc: Oidc
) -> None:
    env.gateway.failures = FailureLimiter(limit=3, window_s=60.0, clock=FakeClock())
    forged = [_unsigned(oidc.issuer.claims(sub=f"s{i}")) for i in range(4)]

    answers = [(await env.client.get("/v1/jobs", headers=oidc.bearer(t))).status_code
               for t in forged]  # fmt: skip
    good_token_now = await env.client.get("/v1/jobs", headers=oidc.bearer(oidc.issuer.mint()))

    assert answers == [401, 401, 401, 429]
    assert good_token_now.status_code == 429


async def test_leeway_accepts_a_token_just_expired(env: Env, oidc: Oidc) -> None:
    token = oidc.issuer.mint(exp=int(time.time()) - 5)  # within the default 30 s

    assert (await env.client.get("/v1/jobs", headers=oidc.bearer(token))).status_code == 200


async def test_a_missing_scope_is_403_naming_it(env: Env, oidc: Oidc, spec: Spec) -> None:
    reader = oidc.issuer.mint(scope="openid jobs:read")

    post = await env.client.post("/v1/jobs", json={"spec": spec()}, headers=oidc.bearer(reader))
    get = await env.client.get("/v1/jobs", headers=oidc.bearer(reader))

    assert post.status_code == 403
    assert post.json()["detail"] == "this token lacks the scope 'jobs:write'"
    assert get.status_code == 200
    assert env.bus.events("job.requested") == []


async def test_scopes_from_an_scp_list_claim(env: Env, oidc: Oidc, spec: Spec) -> None:
    assert env.gateway.oidc is not None
    env.gateway.oidc.config = OidcConfig(
        issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256", "ES256"], scope_claim="scp",
        tenant_claim="https://fedbus.dev/tenant",
    )  # fmt: skip
    token = oidc.issuer.mint(
        scp=["jobs:write"], scope=None, tenant=None, extra={"https://fedbus.dev/tenant": "acme"}
    )

    post = await env.client.post("/v1/jobs", json={"spec": spec()}, headers=oidc.bearer(token))
    get = await env.client.get("/v1/jobs", headers=oidc.bearer(token))

    assert post.status_code == 202
    assert get.status_code == 403


async def test_another_tenants_job_is_404(env: Env, oidc: Oidc, spec: Spec) -> None:
    created = await env.client.post("/v1/jobs", json={"spec": spec()}, headers=env.auth("acme"))
    job_id = created.json()["job_id"]
    globex = oidc.bearer(oidc.issuer.mint(tenant="globex"))

    show = await env.client.get(f"/v1/jobs/{job_id}", headers=globex)
    cancel = await env.client.post(f"/v1/jobs/{job_id}/cancel", headers=globex)
    listed = await env.client.get("/v1/jobs", headers=globex)

    assert [show.status_code, cancel.status_code] == [404, 404]
    assert listed.json() == {"jobs": []}


async def test_a_rotated_key_is_picked_up_after_one_refetch(env: Env, oidc: Oidc) -> None:
    first = await env.client.get("/v1/jobs", headers=oidc.bearer(oidc.issuer.mint("rsa-1")))
    oidc.issuer.published["rsa-2"] = (_RSA_2, "RS256")
    rotated = oidc.bearer(oidc.issuer.mint("rsa-2"))
    oidc.clock.now += 31  # past the minimum refetch interval

    after = await env.client.get("/v1/jobs", headers=rotated)
    again = await env.client.get("/v1/jobs", headers=rotated)

    assert [first.status_code, after.status_code, again.status_code] == [200, 200, 200]
    assert oidc.issuer.fetches == 2


async def test_random_kids_cannot_make_the_gateway_hammer_the_issuer(env: Env, oidc: Oidc) -> None:
    env.gateway.failures = FailureLimiter(limit=10_000, window_s=60.0)
    await env.client.get("/v1/jobs", headers=oidc.bearer(oidc.issuer.mint()))

    answers = set()
    for _ in range(200):  # 200 tokens over 100 simulated seconds
        oidc.clock.now += 0.5
        token = oidc.issuer.mint(uuid.uuid4().hex, key=_ATTACKER)
        answers.add((await env.client.get("/v1/jobs", headers=oidc.bearer(token))).status_code)

    assert answers == {401}
    assert oidc.issuer.fetches <= 1 + 100 // 30


async def test_issuer_down_at_start_is_503_not_an_auth_failure(env: Env, oidc: Oidc) -> None:
    oidc.issuer.down = True
    env.gateway.failures = FailureLimiter(limit=1, window_s=60.0, clock=FakeClock())
    token = oidc.bearer(oidc.issuer.mint())

    down = await env.client.get("/v1/jobs", headers=token)
    oidc.issuer.down = False
    oidc.clock.now += 30
    up = await env.client.get("/v1/jobs", headers=token)

    assert down.status_code == 503
    assert "Retry-After" in down.headers
    assert up.status_code == 200


async def test_an_issuer_outage_keeps_the_cached_keys(env: Env, oidc: Oidc) -> None:
    token = oidc.bearer(oidc.issuer.mint())
    await env.client.get("/v1/jobs", headers=token)
    oidc.issuer.down = True
    oidc.clock.now += 301  # the keys are stale; the refetch fails

    assert (await env.client.get("/v1/jobs", headers=token)).status_code == 200
    assert oidc.issuer.fetches == 2


async def test_api_keys_still_work_beside_the_issuer(env: Env, oidc: Oidc) -> None:
    assert (await env.client.get("/v1/jobs", headers=env.auth("acme"))).status_code == 200
    assert (await env.client.get("/v1/jobs", headers=env.auth("globex"))).status_code == 200
    assert oidc.issuer.fetches == 0


def test_the_jwt_shape() -> None:
    token = Issuer().mint()

    assert looks_like_jwt(token)
    assert looks_like_jwt(_unsigned({"sub": "x"}))
    assert not looks_like_jwt("acme-secret-key")
    assert not looks_like_jwt("a.b.c")  # the header is not JSON
    assert not looks_like_jwt(token + ".extra")


@pytest.mark.parametrize("algorithms", [["none"], ["HS256"], ["RS256", "HS512"], []])
def test_settings_refuse_symmetric_and_no_algorithms(algorithms: list[str]) -> None:
    with pytest.raises(ValidationError, match="not allowed"):
        GatewaySettings(
            gateway_oidc_issuer=ISSUER, gateway_oidc_audience=AUDIENCE,
            gateway_oidc_jwks_url="https://issuer.test/jwks.json",
            gateway_oidc_algorithms=algorithms,
        )  # fmt: skip


def test_settings_refuse_a_half_configured_issuer() -> None:
    with pytest.raises(ValidationError, match="FEDBUS_GATEWAY_OIDC_JWKS_URL"):
        GatewaySettings(gateway_oidc_issuer=ISSUER, gateway_oidc_audience=AUDIENCE)


def test_production_refuses_a_plain_http_jwks_url_and_needs_no_api_key_beside_an_issuer() -> None:
    def settings(url: str, **more: Any) -> GatewaySettings:
        return GatewaySettings.model_validate({
            "gateway_oidc_issuer": ISSUER, "gateway_oidc_audience": AUDIENCE,
            "gateway_oidc_jwks_url": url, **more,
        })  # fmt: skip

    with pytest.raises(ValueError, match="the OIDC JWKS URL is not https") as refused:
        settings("http://issuer.test/jwks", env="production")
    development = settings("http://issuer.test/jwks")
    https = settings("https://issuer.test/jwks")

    assert "no gateway API keys" not in str(refused.value)
    assert development.gateway_oidc_jwks_url == "http://issuer.test/jwks"
    assert not [p for p in https.insecure_values() if "OIDC" in p or "API keys" in p]


async def test_a_slow_jwks_fetch_stalls_only_the_request_that_needs_it() -> None:
    issuer, clock = Issuer(), FakeClock()
    release = asyncio.Event()

    async def slow_fetch() -> Any:
        if issuer.fetches:  # the first fetch is quick; the refetch hangs until released
            await release.wait()
        return await issuer.fetch()

    cache = JwksCache(slow_fetch, algorithms=["RS256", "ES256"], lifespan_s=300,
                      min_refetch_s=30, clock=clock)  # fmt: skip
    assert await cache.key("rsa-1") is not None
    clock.now += 31
    refetch = asyncio.create_task(cache.key("random-kid"))  # unknown kid: a refetch, hanging
    await asyncio.sleep(0)  # let it take the lock and start fetching

    known = await asyncio.wait_for(cache.key("rsa-1"), 1)  # answered from the cache
    other_random = await asyncio.wait_for(cache.key("another-random-kid"), 1)

    assert known is not None
    assert other_random is None
    assert not refetch.done()
    release.set()
    assert await refetch is None
    assert issuer.fetches == 2


class NoKeys:
    """A JWKS that knows no key: any token verified against it is refused."""

    async def key(self, kid: str) -> None:
        return None


async def test_a_verified_token_is_reused_for_cache_s_then_verified_again(
    env: Env, oidc: Oidc
) -> None:
    token = oidc.bearer(oidc.issuer.mint())
    first = await env.client.get("/v1/jobs", headers=token)
    assert env.gateway.oidc is not None
    env.gateway.oidc.jwks = NoKeys()  # type: ignore[assignment]  # verifying now fails

    cached = await env.client.get("/v1/jobs", headers=token)
    oidc.clock.now += 31  # past the default 30 s
    verified = await env.client.get("/v1/jobs", headers=token)

    assert [first.status_code, cached.status_code, verified.status_code] == [200, 200, 401]
    assert "not in the issuer's JWKS" in verified.json()["detail"]


async def test_a_cached_token_ends_at_its_expiry_plus_the_leeway(env: Env, oidc: Oidc) -> None:
    clock = FakeClock(now=time.time())
    config = OidcConfig(issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"], leeway_s=10)
    env.gateway.oidc = OidcVerifier(config, oidc.cache, cache_s=3600, clock=clock)
    token = oidc.bearer(oidc.issuer.mint(exp=int(clock.now) + 60))
    assert (await env.client.get("/v1/jobs", headers=token)).status_code == 200
    env.gateway.oidc.jwks = NoKeys()  # type: ignore[assignment]

    clock.now += 69  # before exp + leeway: still the cached principal
    before = await env.client.get("/v1/jobs", headers=token)
    clock.now += 2  # past it: verified again, and refused
    after = await env.client.get("/v1/jobs", headers=token)

    assert [before.status_code, after.status_code] == [200, 401]


async def test_a_cached_token_changed_in_one_claim_is_verified_and_refused(
    env: Env, oidc: Oidc
) -> None:
    token = oidc.issuer.mint()
    assert (await env.client.get("/v1/jobs", headers=oidc.bearer(token))).status_code == 200

    forged = await env.client.get("/v1/jobs", headers=oidc.bearer(_swap_tenant(token, "globex")))

    assert forged.status_code == 401


async def test_no_token_cache_verifies_every_time(env: Env, oidc: Oidc) -> None:
    config = OidcConfig(issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"])
    env.gateway.oidc = OidcVerifier(config, oidc.cache, cache_s=0)
    token = oidc.bearer(oidc.issuer.mint())
    assert (await env.client.get("/v1/jobs", headers=token)).status_code == 200
    env.gateway.oidc.jwks = NoKeys()  # type: ignore[assignment]

    assert (await env.client.get("/v1/jobs", headers=token)).status_code == 401
