"""The CDC relay's logical replication slot: made, lost and made again, read, advanced.

The slot `saga_outbox` (pgoutput) decodes the publication of the same name
(migration 0008). These are replication functions of PostgreSQL, not
statements on the outbox: the reader calls them on its own asyncpg connection,
which holds the reader lock; `slot_status` is the operators' view of the slot.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger(__name__)

SLOT = "saga_outbox"
PUBLICATION = "saga_outbox"
_PEEK = (
    "SELECT lsn, data FROM pg_logical_slot_peek_binary_changes($1, $2::pg_lsn, $3,"
    " 'proto_version', '1', 'publication_names', $4)"
)
_READER_LOCK = "SELECT pg_try_advisory_lock(hashtext('saga-outbox-cdc-reader'))"
# The slot is gone (dropped), or PostgreSQL gave up its WAL (invalidated).
SLOT_LOST = {"42704", "55000"}


async def ensure_slot(conn: asyncpg.Connection) -> bool:
    """Create the slot if missing; True when it was created now."""
    exists = await conn.fetchval("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", SLOT)
    if exists:
        return False
    try:
        await conn.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", SLOT)
    except asyncpg.DuplicateObjectError:
        return False  # another relay created it first
    log.info("created logical replication slot %s", SLOT)
    return True


async def recreate_slot(conn: asyncpg.Connection) -> None:
    with contextlib.suppress(asyncpg.UndefinedObjectError):
        await conn.execute("SELECT pg_drop_replication_slot($1)", SLOT)
    await ensure_slot(conn)
    log.warning("replication slot %s was lost and made again", SLOT)


async def take_reader_lock(conn: asyncpg.Connection) -> bool:
    """One CDC relay reads the slot at a time: False while another holds the lock."""
    return bool(await conn.fetchval(_READER_LOCK))


async def flushed_lsn(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT pg_current_wal_flush_lsn()"))


async def peek(conn: asyncpg.Connection, upto: int, limit: int) -> list[Any]:
    """The slot's next changes up to `upto`, `limit` at most, left in the slot."""
    return list(await conn.fetch(_PEEK, SLOT, upto, limit, PUBLICATION))


async def advance(conn: asyncpg.Connection, lsn: int) -> None:
    await conn.execute("SELECT pg_replication_slot_advance($1, $2::pg_lsn)", SLOT, lsn)


@dataclass(frozen=True)
class SlotStatus:
    """The CDC relay's replication slot: WAL it holds back, and whether PostgreSQL
    still keeps that WAL (`lost` once max_slot_wal_keep_size was passed)."""

    retained_bytes: int | None  # None once lost: PostgreSQL no longer keeps its WAL
    wal_status: str
    active: bool

    @property
    def lost(self) -> bool:
        return self.wal_status == "lost" or self.retained_bytes is None


async def slot_status(conn: AsyncConnection) -> SlotStatus | None:
    """None when there is no slot (no CDC relay ever ran)."""
    row = (
        await conn.execute(
            text(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), wal_status, active"
                " FROM pg_replication_slots WHERE slot_name = :slot"
            ),
            {"slot": SLOT},
        )
    ).first()
    if row is None:
        return None
    return SlotStatus(None if row[0] is None else int(row[0]), str(row[1]), bool(row[2]))
