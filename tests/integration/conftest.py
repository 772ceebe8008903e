"""Fixtures of the relay's integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from db.engine import asyncpg_dsn
from relay.slot import SLOT, ensure_slot


@pytest.fixture
async def slot(settings) -> AsyncIterator[asyncpg.Connection]:
    """The replication slot, created before the test writes; dropped after, so it
    holds back no WAL for the rest of the session."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_target))
    await ensure_slot(conn)
    yield conn
    for _ in range(50):  # a relay process just stopped may still hold it a moment
        try:
            await conn.execute("SELECT pg_drop_replication_slot($1)", SLOT)
            break
        except asyncpg.ObjectInUseError:
            await asyncio.sleep(0.2)
    await conn.close()
