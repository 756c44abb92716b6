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
from fedbus_gateway.settings import Scope
from fedbus_gateway.store import JobStore

__all__ = ["Gateway", "get_gateway", "owned_job", "require"]

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
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


def get_gateway(request: Request) -> Gateway:
    """The :class:`Gateway` the app was built with."""
    gateway: Gateway = request.app.state.gateway
    return gateway


def require(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller's principal, if its key is valid, has ``scope`` and has budget.

    429 with ``Retry-After`` when the client address failed to authenticate too often (before
    the key is even looked at), 401 without a key or with an unknown one (counted against the
    address), 403 naming the missing scope, 429 with ``Retry-After`` when the key's rate limit
    is spent.
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
        challenge = {"WWW-Authenticate": "Bearer"}
        if not presented:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                headers=challenge,
            )
        found = gateway.keys.authenticate(presented)
        if found is None:
            _count_failure(gateway.failures, address, presented)
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown API key", challenge)
        wait_s = gateway.limiter.acquire(found.key_id)
        if wait_s > 0:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"rate limit exceeded; retry in {wait_s:.2f}s",
                headers={"Retry-After": RateLimiter.retry_after(wait_s)},
            )
        if not found.has(scope):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this API key lacks the scope '{scope.value}'"
            )
        return found

    return principal


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
