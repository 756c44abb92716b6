"""PostgreSQL helpers every service adapter shares.

A lost or refused connection is a :class:`~fedbus.errors.RetryableError` (the consumer loop
retries with backoff); anything else a query raises is left as it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, ClassVar, Self

import asyncpg

from fedbus.errors import RetryableError

__all__ = ["TRANSIENT_ERRORS", "PostgresStore", "connection", "transient_errors"]

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


class PostgresStore:
    """Base of every service's PostgreSQL adapter: the pool, the tables, a ping.

    A subclass sets :attr:`DDL` (idempotent ``CREATE ... IF NOT EXISTS`` statements) and is
    built with :meth:`create`, which runs it under an advisory lock so that two processes
    starting at once do not race on the catalog.
    """

    DDL: ClassVar[str] = ""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def create(cls, pool: asyncpg.Pool) -> Self:
        """Create the tables if needed and return the store."""
        async with connection(pool) as conn:
            lock = f"fedbus_ddl:{cls.__module__}.{cls.__qualname__}"
            await conn.execute("SELECT pg_advisory_lock(hashtext($1))", lock)
            try:
                await conn.execute(cls.DDL)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock)
        return cls(pool)

    def _connection(self) -> AbstractAsyncContextManager[Any]:
        """A pooled connection whose connection failures are retryable."""
        return connection(self._pool)

    async def ping(self) -> bool:
        """True when PostgreSQL answers a trivial query within 2 s."""
        try:
            return bool(await self._pool.fetchval("SELECT 1", timeout=2.0) == 1)
        except (*TRANSIENT_ERRORS, asyncpg.PostgresError):
            return False
