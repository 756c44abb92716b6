"""JWT bearer tokens from an OIDC issuer: the issuer's JWKS, cached, and claims to a principal.

Tokens are verified with PyJWT (:func:`jwt.decode`) against keys built with
:class:`jwt.PyJWKSet`. The JWKS is fetched with httpx rather than :class:`jwt.PyJWKClient`:
PyJWKClient fetches with blocking urllib, so every refetch would need a worker thread, and
its cooldown runs on its own clock, which tests cannot advance. Here the fetch is awaited
on the event loop, behind a lock (concurrent requests share one fetch), and at most one
fetch is *tried* per ``min_refetch_s``, whether it was a cache expiry or an unknown ``kid``:
a flood of tokens with random key ids costs the issuer at most one request per interval.

A verified token's principal is kept for ``cache_s`` seconds (never past the token's expiry
plus the leeway), keyed by the token's SHA-256: verifying a signature and the claims took
about 0.4 ms of CPU (the rest of a ``:predict``'s work on the event loop about 1.4 ms), for
a token a client sends again and again. A token whose key leaves the JWKS, or whose issuer would
revoke it, is still accepted until its entry ends; ``cache_s`` 0 verifies every time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from pydantic_core import PydanticCustomError

from fedbus.events import check_storable
from fedbus_gateway.auth import Principal
from fedbus_gateway.settings import GatewaySettings, Scope

__all__ = [
    "JwksCache",
    "JwksUnavailableError",
    "OidcConfig",
    "OidcVerifier",
    "TokenRejectedError",
    "http_jwks_fetcher",
    "looks_like_jwt",
]

log = logging.getLogger(__name__)

_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$")


def looks_like_jwt(presented: str) -> bool:
    """True when ``presented`` has a JWT's shape: three base64url segments, a JSON header."""
    if _JWT_SHAPE.match(presented) is None:
        return False
    head = presented.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(header, dict)


class TokenRejectedError(Exception):
    """A JWT that does not authenticate; ``reason`` is safe to log and to answer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JwksUnavailableError(Exception):
    """The issuer's JWKS could not be fetched and no keys are cached."""


JwksFetcher = Callable[[], Awaitable[Any]]
"""Returns the JWKS document (parsed JSON); raises on failure."""


def http_jwks_fetcher(url: str, client: httpx.AsyncClient) -> JwksFetcher:
    """A fetcher GETting ``url`` with ``client`` (redirects are not followed)."""

    async def fetch() -> Any:
        response = await client.get(url, follow_redirects=False)
        response.raise_for_status()
        return response.json()

    return fetch


class JwksCache:
    """The issuer's signing keys by ``kid``, refetched when stale or when a ``kid`` is new.

    Keys are kept ``lifespan_s`` seconds. Fetches are tried at most once per
    ``min_refetch_s``; a failed fetch keeps the keys already held.
    """

    def __init__(
        self,
        fetch: JwksFetcher,
        *,
        algorithms: list[str],
        lifespan_s: float = 300.0,
        min_refetch_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._algorithms = set(algorithms)
        self._lifespan_s = lifespan_s
        self._min_refetch_s = min_refetch_s
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._fetched_at = 0.0
        self._tried_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0
        """Fetches tried so far (for tests and metrics)."""

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key ``kid``, fetching the JWKS first when stale or when ``kid`` is unknown.

        A known ``kid`` of a fresh cache, and an unknown one while no fetch may be tried (one
        is in flight or was tried within ``min_refetch_s``), are answered at once: only a
        request that needs a fetch waits for it.
        """
        keys, now = self._keys, self._clock()
        if keys is not None:
            if kid in keys and now - self._fetched_at < self._lifespan_s:
                return keys[kid]
            if self._tried_at is not None and now - self._tried_at < self._min_refetch_s:
                return keys.get(kid)
        async with self._lock:
            stale = self._keys is None or self._clock() - self._fetched_at >= self._lifespan_s
            if stale or kid not in (self._keys or {}):
                await self._refresh()
            if self._keys is None:
                raise JwksUnavailableError("the issuer's JWKS could not be fetched")
            return self._keys.get(kid)

    async def _refresh(self) -> None:
        now = self._clock()
        if self._tried_at is not None and now - self._tried_at < self._min_refetch_s:
            return
        self._tried_at = now
        self.fetches += 1
        try:
            keys = self._usable(await self._fetch())
        except Exception as exc:  # the issuer's failure must not become the caller's 500
            log.warning("fetching the OIDC issuer's JWKS failed: %s", exc)
            return
        self._keys, self._fetched_at = keys, now

    def _usable(self, document: Any) -> dict[str, jwt.PyJWK]:
        if not isinstance(document, dict):
            raise ValueError("the JWKS is not a JSON object")
        keys: dict[str, jwt.PyJWK] = {}
        for key in jwt.PyJWKSet.from_dict(document).keys:
            # Signing keys with a kid and an allowed (asymmetric) algorithm only.
            signing = key.public_key_use in (None, "sig") and key.key_type != "oct"
            if key.key_id and signing and key.algorithm_name in self._algorithms:
                keys[key.key_id] = key
        return keys


_REASONS: list[tuple[type[jwt.PyJWTError], str]] = [
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet"),
    (jwt.InvalidAudienceError, "the token is for another audience"),
    (jwt.InvalidIssuerError, "the token is from another issuer"),
    (jwt.InvalidSignatureError, "the token's signature does not verify"),
    (jwt.InvalidAlgorithmError, "the token's algorithm is not that of its signing key"),
]


@dataclass(frozen=True)
class OidcConfig:
    """What a token must match and where its tenant and scopes are."""

    issuer: str
    audience: str
    algorithms: list[str]
    tenant_claim: str = "tenant"
    scope_claim: str = "scope"
    leeway_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> OidcConfig | None:
        """The config in ``settings``, or None when no issuer is configured."""
        if not settings.gateway_oidc_issuer or not settings.gateway_oidc_audience:
            return None
        return cls(
            issuer=settings.gateway_oidc_issuer, audience=settings.gateway_oidc_audience,
            algorithms=list(settings.gateway_oidc_algorithms),
            tenant_claim=settings.gateway_oidc_tenant_claim,
            scope_claim=settings.gateway_oidc_scope_claim, leeway_s=settings.gateway_oidc_leeway_s,
        )  # fmt: skip


class OidcVerifier:
    """Verifies a bearer JWT and maps its claims to a :class:`Principal`.

    A verified token's principal is reused for ``cache_s`` seconds, never past the token's
    ``exp`` plus the leeway; at most ``cache_size`` tokens are kept (the oldest go first).
    """

    def __init__(
        self,
        config: OidcConfig,
        jwks: JwksCache,
        *,
        cache_s: float = 30.0,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.jwks = jwks
        self.cache_s, self.cache_size, self._clock = cache_s, cache_size, clock
        self._verified: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()

    async def authenticate(self, token: str) -> Principal:
        """The token's principal; :class:`TokenRejectedError` saying why it is not valid."""
        digest = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        known = self._verified.get(digest)
        if known is not None:
            if now < known[1]:
                return known[0]
            del self._verified[digest]
        principal, expires = await self._verify(token)
        if self.cache_s > 0:
            self._verified[digest] = (principal, min(now + self.cache_s, expires))
            while len(self._verified) > self.cache_size:
                self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        """The token's principal and the time after which its ``exp`` refuses it."""
        cfg = self.config
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejectedError("the token is malformed") from None
        alg = header.get("alg")
        if alg not in cfg.algorithms:
            raise TokenRejectedError(f"the token's algorithm {str(alg)[:16]!r} is not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejectedError("the token names no signing key (kid)")
        key = await self.jwks.key(kid)
        if key is None:
            raise TokenRejectedError("the token's signing key (kid) is not in the issuer's JWKS")
        claims = self._decode(token, key)
        # jwt.decode checked that exp is a number
        return self._principal(claims), float(claims["exp"]) + cfg.leeway_s

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        cfg = self.config
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=cfg.algorithms, audience=cfg.audience, issuer=cfg.issuer,
                leeway=cfg.leeway_s, options={"require": ["exp", "iss", "aud", "sub"]},
            )  # fmt: skip
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejectedError(f"the token has no '{exc.claim}' claim") from None
        except jwt.PyJWTError as exc:
            reason = next((r for t, r in _REASONS if isinstance(exc, t)), "the token is invalid")
            raise TokenRejectedError(reason) from None
        return claims

    def _principal(self, claims: dict[str, Any]) -> Principal:
        cfg = self.config
        tenant = claims.get(cfg.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise TokenRejectedError(f"the token has no '{cfg.tenant_claim}' claim naming a tenant")
        subject = str(claims["sub"])
        for claim, value in ((cfg.tenant_claim, tenant), ("sub", subject)):
            if len(value) > MAX_CLAIM_CHARS or not _storable(value):
                raise TokenRejectedError(
                    f"the token's '{claim}' claim is longer than {MAX_CLAIM_CHARS} characters "
                    "or holds a NUL or an unpaired surrogate"
                )
        return Principal(
            key_id=f"oidc:{subject}"[:200], tenant=tenant,
            scopes=_scopes(claims.get(cfg.scope_claim)), name=f"oidc:{subject}",
        )  # fmt: skip


MAX_CLAIM_CHARS = 200
"""Longest tenant or subject a token may name (they are stored and put in events)."""


def _storable(text: str) -> bool:
    try:
        check_storable(text)
    except PydanticCustomError:
        return False
    return True


def _scopes(value: object) -> frozenset[Scope]:
    """Scopes from a space-separated string (``scope``) or a list (``scp``); others ignored."""
    if isinstance(value, str):
        names = value.split()
    elif isinstance(value, list):
        names = [v for v in value if isinstance(v, str)]
    else:
        names = []
    known = {s.value: s for s in Scope}
    return frozenset(known[n] for n in names if n in known)
