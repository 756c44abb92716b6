"""Wiring only: settings, adapters, handlers, the REST API, then run until SIGTERM.

``fedbus-gateway`` or ``python -m fedbus_gateway``; configured by ``FEDBUS_*`` variables
(see :class:`~fedbus_gateway.settings.GatewaySettings`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import uvloop

from fedbus.service import ServiceRuntime
from fedbus.settings import load_settings
from fedbus.telemetry import configure_logging
from fedbus_gateway.adapters import PostgresJobStore, RegistryClient
from fedbus_gateway.api import Gateway, create_app
from fedbus_gateway.auth import FailureLimiter, KeyRing, RateLimiter
from fedbus_gateway.deps import Deps
from fedbus_gateway.fanout import JobEventHub
from fedbus_gateway.handlers import HANDLERS
from fedbus_gateway.oidc import JwksCache, OidcConfig, OidcVerifier, http_jwks_fetcher
from fedbus_gateway.predict import Predictor
from fedbus_gateway.settings import GatewaySettings

__all__ = ["main", "run"]

log = logging.getLogger(__name__)

SOURCE = "gateway"


async def main(settings: GatewaySettings | None = None) -> None:
    """Start the gateway and serve until SIGTERM."""
    settings = settings or load_settings(GatewaySettings)
    configure_logging(SOURCE, settings.log_level)
    if not settings.gateway_api_keys and not settings.gateway_oidc_issuer:
        log.warning("no API keys or OIDC issuer configured: every call gets 401")
    async with ServiceRuntime.open(SOURCE, settings, pool_size=8) as rt:
        jobs = await PostgresJobStore.create(rt.pool)
        rt.watch("postgres", jobs.ping)
        registry = RegistryClient(settings.registry_url, timeout_s=settings.registry_timeout_s)
        rt.on_close(registry.close)
        hub = JobEventHub()
        limiter = RateLimiter(
            rate=settings.gateway_rate_per_second, burst=settings.gateway_rate_burst
        )
        gateway = Gateway(
            jobs=jobs, publisher=rt.producer, hub=hub, registry=registry,
            keys=KeyRing(settings.gateway_api_keys), limiter=limiter,
            sse_ping_s=settings.sse_ping_s,
            failures=FailureLimiter(limit=settings.gateway_auth_failures,
                                    window_s=settings.gateway_auth_failure_window_s),
            oidc=oidc_verifier(settings, rt.on_close),
            predictor=predictor(settings, registry),
        )  # fmt: skip
        deps = Deps(jobs=jobs, hub=hub)
        app = create_app(gateway, max_body_bytes=settings.gateway_max_body_bytes)
        await rt.run(HANDLERS, deps, group_id=settings.consumer_group, app=app)


def predictor(settings: GatewaySettings, registry: RegistryClient) -> Predictor:
    """Predictions over the registry with the ``FEDBUS_GATEWAY_PREDICT_*`` settings."""
    return Predictor(
        registry,
        capacity=settings.gateway_predict_cache_models,
        max_rows=settings.gateway_predict_max_rows,
        batch_rows=settings.gateway_predict_batch_rows,
        batch_wait_s=settings.gateway_predict_batch_wait_ms / 1000,
        datasets=settings.gateway_predict_datasets,
        torch_threads=settings.gateway_predict_torch_threads,
    )


def oidc_verifier(
    settings: GatewaySettings, on_close: Callable[[Callable[[], Awaitable[Any]]], None]
) -> OidcVerifier | None:
    """The JWT verifier for the configured OIDC issuer, or None when there is none."""
    config = OidcConfig.from_settings(settings)
    if config is None or settings.gateway_oidc_jwks_url is None:
        return None
    client = httpx.AsyncClient(timeout=settings.gateway_oidc_jwks_timeout_s)
    on_close(client.aclose)
    jwks = JwksCache(
        http_jwks_fetcher(settings.gateway_oidc_jwks_url, client),
        algorithms=config.algorithms, lifespan_s=settings.gateway_oidc_jwks_lifespan_s,
        min_refetch_s=settings.gateway_oidc_jwks_min_refetch_s,
    )  # fmt: skip
    log.info("accepting JWT bearer tokens from %s (JWKS %s)", config.issuer,
             settings.gateway_oidc_jwks_url)  # fmt: skip
    return OidcVerifier(config, jwks, cache_s=settings.gateway_oidc_token_cache_s)


def run() -> None:
    """Console entry point ``fedbus-gateway``, on uvloop's event loop.

    uvloop cuts the gateway's own CPU per ``:predict`` (``bench/predict_latency.py``). The
    HTTP parser stays h11 (``fedbus.service``): with httptools a large body without a key
    was read in full before its 413.
    """
    uvloop.run(main())
