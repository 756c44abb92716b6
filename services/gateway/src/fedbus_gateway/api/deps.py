"""What routes share: the :class:`Gateway` (ports) and the auth/scope/rate-limit dependency."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from fedbus.bus import Publisher
from fedbus_gateway.adapters.registry import RegistryClient
from fedbus_gateway.auth import FailureLimiter, KeyRing, Principal, RateLimiter, key_sha256
from fedbus_gateway.fanout import JobEventHub
from fedbus_gateway.jobs import JobView
from fedbus_gateway.oidc import (
    JwksUnavailableError,
    OidcVerifier,
    TokenRejectedError,
    looks_like_jwt,
)
from fedbus_gateway.predict import Predictor
from fedbus_gateway.settings import Scope
from fedbus_gateway.store import JobStore

__all__ = ["Gateway", "get_gateway", "owned_job", "require"]

log = logging.getLogger(__name__)

_bearer = HTTPBearer(
    auto_error=False, description="`Authorization: Bearer <API key or JWT from the OIDC issuer>`"
)
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key")


@dataclass
class Gateway:
    """The gateway's ports and policies, built in ``main.py`` (fakes in tests)."""

    jobs: JobStore
    publisher: Publisher
    hub: JobEventHub
    registry: RegistryClient
    keys: KeyRing
    limiter: RateLimiter
    sse_ping_s: float = 15.0
    failures: FailureLimiter = field(
        default_factory=lambda: FailureLimiter(limit=20, window_s=60.0)
    )
    oidc: OidcVerifier | None = None
    """Verifies JWT bearer tokens; None when no OIDC issuer is configured."""
    predictor: Predictor | None = None
    """Serves ``:predict``; None: one with the defaults over ``registry``, made on first use."""

    def predictions(self) -> Predictor:
        """The predictor (made with the defaults on first use when none was given)."""
        if self.predictor is None:
            self.predictor = Predictor(self.registry)
        return self.predictor


async def get_gateway(request: Request) -> Gateway:
    """The :class:`Gateway` the app was built with.

    ``async`` although it awaits nothing: FastAPI runs a plain ``def`` dependency in its
    thread pool, a thread hop on every request (measurable on ``:predict``).
    """
    gateway: Gateway = request.app.state.gateway
    return gateway


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller's principal, if its credential is valid, has ``scope`` and budget.

    429 with ``Retry-After`` when the client address failed to authenticate too often (before
    the credential is even looked at), 401 without one, with an unknown API key or with a JWT
    that does not verify (both counted against the address), 403 naming the missing scope,
    429 with ``Retry-After`` when the principal's rate limit is spent.
    """

    async def principal(
        request: Request,
        gateway: Annotated[Gateway, Depends(get_gateway)],
        bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
        header_key: Annotated[str | None, Security(_api_key)],
    ) -> Principal:
        # Behind a proxy this is the proxy's address: X-Forwarded-For is not trusted.
        address = request.client.host if request.client is not None else "unknown"
        _refuse_blocked(gateway.failures, address)
        presented = bearer.credentials if bearer is not None else header_key
        if not presented:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                headers=_CHALLENGE,
            )
        found = await _authenticate(gateway, address, presented)
        wait_s = gateway.limiter.acquire(found.key_id)
        if wait_s > 0:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"rate limit exceeded; retry in {wait_s:.2f}s",
                headers={"Retry-After": RateLimiter.retry_after(wait_s)},
            )
        if not found.has(scope):
            what = "token" if found.name.startswith("oidc:") else "API key"
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this {what} lacks the scope '{scope.value}'"
            )
        return found

    return principal


_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def _authenticate(gateway: Gateway, address: str, presented: str) -> Principal:
    """The principal of an API key or, when an issuer is configured, of a JWT.

    A credential shaped like a JWT is only ever verified as one: one that fails is a 401,
    never retried as an API key.
    """
    if gateway.oidc is not None and looks_like_jwt(presented):
        try:
            return await gateway.oidc.authenticate(presented)
        except TokenRejectedError as exc:
            _count_token_failure(gateway.failures, address, exc.reason)
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, f"invalid token: {exc.reason}", _INVALID_TOKEN
            ) from None
        except JwksUnavailableError:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "the OIDC issuer's signing keys cannot be fetched; retry later",
                headers={"Retry-After": "30"},
            ) from None
    found = gateway.keys.authenticate(presented)
    if found is None:
        _count_failure(gateway.failures, address, presented)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown API key", _CHALLENGE)
    return found


_INVALID_TOKEN = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def _count_token_failure(failures: FailureLimiter, address: str, reason: str) -> None:
    # The reason only, never the token: it may be a real user's, merely expired.
    count = failures.fail(address)
    level = logging.WARNING if count in (1, failures.limit) else logging.INFO
    log.log(level, "rejected a bearer token from %s (failure %d of %d in %.0f s): %s",
            address, count, failures.limit, failures.window_s, reason)  # fmt: skip


def _refuse_blocked(failures: FailureLimiter, address: str) -> None:
    wait_s = failures.blocked(address)
    if wait_s > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many failed authentications from this address; retry in {wait_s:.0f}s",
            headers={"Retry-After": RateLimiter.retry_after(wait_s)},
        )


def _count_failure(failures: FailureLimiter, address: str, presented: str) -> None:
    # Logged once per address and window (and when it is blocked), never the key itself:
    # a short prefix of its hash tells repeated guesses apart.
    count = failures.fail(address)
    if count == 1:
        log.warning(
            "unknown API key from %s (key id %s); further failures from it are counted, "
            "not logged, for %.0f s", address, key_sha256(presented)[:8], failures.window_s,
        )  # fmt: skip
    if count == failures.limit:
        log.warning(
            "%s failed authentication %d times within %.0f s: refused (429) until the window ends",
            address, count, failures.window_s,
        )  # fmt: skip


async def owned_job(gateway: Gateway, principal: Principal, job_id: str) -> JobView:
    """The caller's job ``job_id``; 404 when it does not exist or belongs to another tenant."""
    view = await gateway.jobs.get(job_id)
    if view is None or view.tenant != principal.tenant:
        # The same answer for both: another tenant's job ids are not even confirmed.
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job '{job_id}'")
    return view
