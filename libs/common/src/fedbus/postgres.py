"""PostgreSQL helpers every service adapter shares.

A lost or refused connection is a :class:`~fedbus.errors.RetryableError` (the consumer loop
retries with backoff); anything else a query raises is left as it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from fedbus.errors import RetryableError

__all__ = ["TRANSIENT_ERRORS", "connection", "transient_errors"]

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
)
"""Errors that mean "the database is not reachable right now"."""


@asynccontextmanager
async def transient_errors() -> AsyncIterator[None]:
    """Turn a lost or refused database connection into a :class:`RetryableError`."""
    try:
        yield
    except TRANSIENT_ERRORS as exc:
        raise RetryableError(f"PostgreSQL unavailable: {exc}") from exc


@asynccontextmanager
async def connection(pool: asyncpg.Pool) -> AsyncIterator[Any]:
    """A pooled connection whose connection failures are retryable."""
    async with transient_errors(), pool.acquire() as conn:
        yield conn
