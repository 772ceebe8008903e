"""db.engine's pool: a connection idle past its ping threshold is pinged, and replaced
when PostgreSQL killed it; one in steady use is never pinged (pool_pre_ping's three
round trips before every step were a third of the transactions under load)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine, ping_when_idle

pytestmark = pytest.mark.timeout(60)


def counting_pings(engine: AsyncEngine) -> list[int]:
    """Count the dialect's pings on this engine (the real ping still runs)."""
    dialect = engine.sync_engine.dialect
    real, pings = dialect.do_ping, [0]

    def do_ping(dbapi_connection: Any) -> bool:
        pings[0] += 1
        return real(dbapi_connection)

    dialect.do_ping = do_ping  # type: ignore[method-assign]
    return pings


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("select pg_backend_pid()"))).scalar_one())


async def terminate(admin: AsyncEngine, pid: int) -> None:
    async with admin.connect() as conn:
        assert (await conn.execute(text("select pg_terminate_backend(:p)"), {"p": pid})).scalar()
    deadline = time.monotonic() + 4  # well inside IDLE_PING_AFTER_S: no ping may hide it
    while time.monotonic() < deadline:  # gone from pg_stat_activity, not merely signalled
        async with admin.connect() as conn:
            alive = await conn.execute(
                text("select 1 from pg_stat_activity where pid = :p"), {"p": pid}
            )
            if alive.first() is None:
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"backend {pid} outlived pg_terminate_backend")


async def test_an_idle_connection_the_server_killed_is_replaced_before_use(settings, engine):
    pooled = create_engine(settings.database_url, pool_size=1)
    ping_when_idle(pooled, 0.0)  # every checkout of a checked-in connection counts as idle
    pings = counting_pings(pooled)
    try:
        pid = await backend_pid(pooled)
        await terminate(engine, pid)
        # The caller never sees the dead connection: the ping found it first.
        assert await backend_pid(pooled) != pid
        assert pings[0] >= 1
    finally:
        await pooled.dispose()


async def test_a_connection_in_steady_use_is_not_pinged(settings, engine):
    pooled = create_engine(settings.database_url, pool_size=1)
    pings = counting_pings(pooled)
    try:
        pid = await backend_pid(pooled)
        for _ in range(5):
            assert await backend_pid(pooled) == pid
        assert pings[0] == 0
        # Killed while in steady use, it fails once; that disconnect recycles the pool.
        await terminate(engine, pid)
        with pytest.raises(DBAPIError) as failed:
            await backend_pid(pooled)
        assert failed.value.connection_invalidated
        assert await backend_pid(pooled) != pid
    finally:
        await pooled.dispose()
