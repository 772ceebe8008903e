"""Transactions of the app's PostgreSQL database so far, from pg_stat_database, and
the events the relay published so far, from the outboxes.

Each backend reports its counts to the shared statistics when it goes idle, at
most once a second (PGSTAT_MIN_INTERVAL): a reading sees another backend's
transactions only after that. pg_stat_force_next_flush() flushes only the
calling backend's, so the benchmark waits SETTLE_S before each reading instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

# Longer than the 1 s flush interval, with room for a busy backend to get to it.
SETTLE_S = 1.5

_XACTS = text(
    "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
)


async def database_xacts(engine: AsyncEngine) -> int:
    """Commits plus rollbacks of the engine's database (this reading's own included)."""
    async with engine.connect() as conn:
        return int((await conn.scalar(_XACTS)) or 0)


async def published_events(engine: AsyncEngine, outboxes: Sequence[Table]) -> int:
    """Rows the relay has published so far, over every outbox it serves (pruning
    keeps them a week: a benchmark's all count)."""
    counts = [
        select(func.count()).select_from(t).where(t.c.status == "PUBLISHED").scalar_subquery()
        for t in outboxes
    ]
    async with engine.connect() as conn:
        return int(sum((await conn.execute(select(*counts))).one()))
