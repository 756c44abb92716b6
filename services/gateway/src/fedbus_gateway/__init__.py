"""fedbus gateway: the public REST API, API-key auth, rate limits, and live job streams."""

from fedbus_gateway.api import Gateway, create_app
from fedbus_gateway.auth import KeyRing, Principal, RateLimiter, key_sha256
from fedbus_gateway.deps import Deps
from fedbus_gateway.fanout import JobEventHub
from fedbus_gateway.handlers import HANDLERS
from fedbus_gateway.jobs import JobView, ViewStatus, apply
from fedbus_gateway.settings import ApiKeyConfig, GatewaySettings, Scope
from fedbus_gateway.store import JobStore

__all__ = [
    "HANDLERS",
    "ApiKeyConfig",
    "Deps",
    "Gateway",
    "GatewaySettings",
    "JobEventHub",
    "JobStore",
    "JobView",
    "KeyRing",
    "Principal",
    "RateLimiter",
    "Scope",
    "ViewStatus",
    "apply",
    "create_app",
    "key_sha256",
]
