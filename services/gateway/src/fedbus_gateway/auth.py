"""API keys, scopes, per-key rate limits and failed-authentication limits: pure logic, no HTTP.

A presented key is compared with every configured key in constant time
(:func:`hmac.compare_digest`), against the plaintext or against its SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from fedbus_gateway.settings import ApiKeyConfig, Scope

__all__ = ["FailureLimiter", "KeyRing", "Principal", "RateLimiter", "key_sha256"]


def key_sha256(key: str) -> str:
    """The lowercase hex SHA-256 of ``key`` (what ``key_sha256`` in the settings holds)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id (its hash prefix), tenant, scopes and display name."""

    key_id: str
    tenant: str
    scopes: frozenset[Scope]
    name: str

    def has(self, scope: Scope) -> bool:
        """True when the key carries ``scope``."""
        return scope in self.scopes


class KeyRing:
    """The configured API keys."""

    def __init__(self, keys: Iterable[ApiKeyConfig]) -> None:
        self._keys = list(keys)

    def authenticate(self, presented: str) -> Principal | None:
        """The principal of ``presented``, or None when no configured key matches."""
        digest = key_sha256(presented)
        found: ApiKeyConfig | None = None
        for cfg in self._keys:  # no early exit: every key costs the same comparisons
            if cfg.key is not None:
                ok = hmac.compare_digest(presented.encode(), cfg.key.get_secret_value().encode())
            else:
                ok = hmac.compare_digest(digest, (cfg.key_sha256 or "").lower())
            if ok and found is None:
                found = cfg
        if found is None:
            return None
        return Principal(
            key_id=digest[:12],
            tenant=found.tenant,
            scopes=frozenset(found.scopes),
            name=found.name or f"api-key:{found.tenant}:{digest[:8]}",
        )


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """A token bucket per key: ``burst`` requests at once, refilled at ``rate`` per second."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def acquire(self, key_id: str) -> float:
        """Take one token for ``key_id``; returns 0 when allowed, else seconds to wait."""
        now = self.clock()
        bucket = self._buckets.setdefault(key_id, _Bucket(float(self.burst), now))
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    @staticmethod
    def retry_after(wait_s: float) -> str:
        """``Retry-After`` header value (whole seconds, at least 1) for a wait."""
        return str(max(1, math.ceil(wait_s)))


@dataclass
class _Window:
    start: float
    failures: int = 0


@dataclass
class FailureLimiter:
    """Failed authentications per client address, in fixed windows of ``window_s`` seconds.

    Once an address has failed ``limit`` times in a window, :meth:`blocked` says how long
    until the window ends; the caller refuses that address meanwhile, whatever key it sends.
    """

    limit: int
    window_s: float
    clock: Callable[[], float] = time.monotonic
    max_addresses: int = 100_000
    """At most this many addresses are tracked: ended windows are forgotten first, then the
    oldest (an attacker who sprays this many addresses in one window loses its own counts
    too, but memory and time per request stay bounded)."""
    _windows: OrderedDict[str, _Window] = field(default_factory=OrderedDict)

    def blocked(self, address: str) -> float:
        """0 when ``address`` may try to authenticate, else seconds until it may again."""
        window = self._current(address)
        if window is None or window.failures < self.limit:
            return 0.0
        return window.start + self.window_s - self.clock()

    def fail(self, address: str) -> int:
        """Count a failed authentication from ``address``; returns its count in this window."""
        window = self._current(address)
        if window is None:
            self._make_room()
            window = self._windows[address] = _Window(start=self.clock())
        window.failures += 1
        return window.failures

    def _current(self, address: str) -> _Window | None:
        window = self._windows.get(address)
        if window is not None and self.clock() - window.start >= self.window_s:
            del self._windows[address]
            return None
        return window

    def _make_room(self) -> None:
        """Drop ended windows and, past ``max_addresses``, the oldest: O(1) per dropped one.

        Windows are kept in the order they started (an ended one is removed before its
        address starts a new one), so the ended ones are at the front.
        """
        now = self.clock()
        while self._windows:
            _, oldest = next(iter(self._windows.items()))
            if now - oldest.start < self.window_s and len(self._windows) < self.max_addresses:
                return
            self._windows.popitem(last=False)
