"""Remembering which events a consumer group has already handled.

Kafka delivers at least once: a consumer that crashes after its handler ran but before it
committed the offset sees the event again. The runner asks an :class:`IdempotencyStore`
before handling and records the event id after, so a redelivered event is skipped.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

import asyncpg

__all__ = ["IdempotencyStore", "InMemoryIdempotencyStore", "PostgresIdempotencyStore"]


class IdempotencyStore(Protocol):
    """Event ids handled per consumer group."""

    async def seen(self, group: str, event_id: str) -> bool:
        """True when ``event_id`` was already handled by ``group``."""

    async def remember(self, group: str, event_id: str) -> None:
        """Record that ``group`` handled ``event_id``."""


class InMemoryIdempotencyStore:
    """Bounded LRU of recent event ids; survives redelivery but not a process restart."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._ids: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._capacity = capacity

    async def seen(self, group: str, event_id: str) -> bool:
        """See :class:`IdempotencyStore`."""
        return (group, event_id) in self._ids

    async def remember(self, group: str, event_id: str) -> None:
        """See :class:`IdempotencyStore`."""
        self._ids[(group, event_id)] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


class PostgresIdempotencyStore:
    """Handled event ids in PostgreSQL, so they survive a crash and a restart."""

    DDL = """
    CREATE TABLE IF NOT EXISTS fedbus_processed_events (
        consumer_group text NOT NULL,
        event_id text NOT NULL,
        processed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (consumer_group, event_id)
    )"""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def create(cls, pool: asyncpg.Pool) -> PostgresIdempotencyStore:
        """Create the table if needed and return the store."""
        async with pool.acquire() as conn:
            await conn.execute(cls.DDL)
        return cls(pool)

    async def seen(self, group: str, event_id: str) -> bool:
        """See :class:`IdempotencyStore`."""
        row = await self._pool.fetchval(
            "SELECT 1 FROM fedbus_processed_events WHERE consumer_group = $1 AND event_id = $2",
            group,
            event_id,
        )
        return row is not None

    async def remember(self, group: str, event_id: str) -> None:
        """See :class:`IdempotencyStore`."""
        await self._pool.execute(
            "INSERT INTO fedbus_processed_events (consumer_group, event_id) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING",
            group,
            event_id,
        )
