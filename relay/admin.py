"""What operators ask of the relay: its lag, its dead letters, and a re-drive.

Each answers for the tables the relay serves (db.kit_tables.RelayTables).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.kit_tables import RelayTables, schema_of
from db.relay_ring import ring_relay, rung
from relay import outbox
from relay.slot import SlotStatus, slot_status


@dataclass(frozen=True)
class OutboxStatus:
    service: str
    pending: int
    failed: int
    published_last_minute: int
    # Age of the oldest unpublished row: the relay's lag.
    lag_s: float | None


@dataclass(frozen=True)
class DeadLetter:
    service: str
    event_id: str
    aggregate: str
    event_type: str
    attempts: int
    last_error: str | None
    created_at: datetime


async def status(engine: AsyncEngine, tables: RelayTables) -> list[OutboxStatus]:
    async with engine.connect() as conn:
        return [
            OutboxStatus(schema_of(table), *await outbox.counts(conn, table))
            for table in tables.outboxes
        ]


async def cdc_slot(engine: AsyncEngine) -> SlotStatus | None:
    async with engine.connect() as conn:
        return await slot_status(conn)


async def partitions_held(engine: AsyncEngine, tables: RelayTables) -> dict[str, list[int]]:
    """Live leases by owner: which instance publishes which partitions now."""
    leases = tables.leases
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(leases.c.owner, leases.c.partition)
            .where(leases.c.owner.is_not(None), leases.c.expires_at > func.now())
            .order_by(leases.c.partition)
        )
        held: dict[str, list[int]] = {}
        for owner, partition in rows:
            held.setdefault(owner, []).append(partition)
        return held


async def dead_letters(engine: AsyncEngine, tables: RelayTables) -> list[DeadLetter]:
    found = []
    async with engine.connect() as conn:
        for table in tables.outboxes:
            found += [
                DeadLetter(
                    schema_of(table),
                    str(r.event_id),
                    f"{r.aggregate_type}:{r.aggregate_id}",
                    r.event_type,
                    r.attempts,
                    r.last_error,
                    r.created_at,
                )
                for r in await outbox.failed_rows(conn, table)
            ]
    return found


async def redrive(engine: AsyncEngine, tables: RelayTables, event_ids: list[str] | None) -> int:
    """Put dead letters back in the queue (all of them when `event_ids` is None).

    Each gets a fresh count of attempts and is due at once: the polling claim
    takes it, and in CDC mode so does the retry sweep (a re-drive is an UPDATE,
    which the slot does not carry). A ring after the commit wakes a hybrid relay.
    A re-driven event is published after events of its aggregate that went
    out meanwhile: order within the aggregate is not restored.
    """
    moved, woken = 0, []
    async with engine.begin() as conn:
        for table in tables.outboxes:
            found = await outbox.requeue_failed(conn, table, event_ids)
            if found:
                woken.append(schema_of(table))
            moved += found
    for service in woken:
        ring_relay(engine, service)
    await rung(engine)  # the CLI exits next
    return moved
