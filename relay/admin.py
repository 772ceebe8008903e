"""What operators ask of the relay: its lag, its dead letters, and a re-drive."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from db.tables import SERVICES, relay_leases, service_tables
from db.unit_of_work import OUTBOX_CHANNEL
from relay.cdc import SLOT


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


async def status(engine: AsyncEngine) -> list[OutboxStatus]:
    found = []
    async with engine.connect() as conn:
        for service in SERVICES:
            o = service_tables[service].outbox
            row = (
                await conn.execute(
                    select(
                        func.count().filter(o.c.status == "PENDING"),
                        func.count().filter(o.c.status == "FAILED"),
                        func.count().filter(
                            and_(
                                o.c.status == "PUBLISHED",
                                o.c.published_at
                                > func.now() - func.make_interval(0, 0, 0, 0, 0, 1),
                            )
                        ),
                        func.extract(
                            "epoch",
                            func.now() - func.min(o.c.created_at).filter(o.c.status == "PENDING"),
                        ),
                    )
                )
            ).one()
            pending, failed, recent, lag = row
            found.append(
                OutboxStatus(
                    service, pending, failed, recent, float(lag) if lag is not None else None
                )
            )
    return found


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


async def cdc_slot(engine: AsyncEngine) -> SlotStatus | None:
    async with engine.connect() as conn:
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


async def partitions_held(engine: AsyncEngine) -> dict[str, list[int]]:
    """Live leases by owner: which instance publishes which partitions now."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(relay_leases.c.owner, relay_leases.c.partition)
            .where(relay_leases.c.owner.is_not(None), relay_leases.c.expires_at > func.now())
            .order_by(relay_leases.c.partition)
        )
        held: dict[str, list[int]] = {}
        for owner, partition in rows:
            held.setdefault(owner, []).append(partition)
        return held


async def dead_letters(engine: AsyncEngine) -> list[DeadLetter]:
    found = []
    async with engine.connect() as conn:
        for service in SERVICES:
            o = service_tables[service].outbox
            rows = await conn.execute(select(o).where(o.c.status == "FAILED").order_by(o.c.seq))
            found += [
                DeadLetter(
                    service,
                    str(r.event_id),
                    f"{r.aggregate_type}:{r.aggregate_id}",
                    r.event_type,
                    r.attempts,
                    r.last_error,
                    r.created_at,
                )
                for r in rows
            ]
    return found


async def redrive(engine: AsyncEngine, event_ids: list[str] | None) -> int:
    """Put dead letters back in the queue (all of them when `event_ids` is None).

    Each gets a fresh count of attempts and is due at once: the polling claim
    takes it, and in CDC mode so does the retry sweep (a re-drive is an UPDATE,
    which the slot does not carry). The NOTIFY wakes a hybrid relay at commit.
    A re-driven event is published after events of its aggregate that went
    out meanwhile: order within the aggregate is not restored.
    """
    moved = 0
    async with engine.begin() as conn:
        for service in SERVICES:
            o = service_tables[service].outbox
            query = (
                update(o)
                .where(o.c.status == "FAILED")
                .values(status="PENDING", attempts=0, next_attempt_at=func.now())
            )
            if event_ids is not None:
                query = query.where(o.c.event_id.in_(event_ids))
            found = (await conn.execute(query)).rowcount
            if found:
                await conn.execute(select(func.pg_notify(OUTBOX_CHANNEL, service)))
            moved += found
    return moved


async def prune_published(engine: AsyncEngine, retention_s: int) -> int:
    """Delete published rows older than the retention; failed and pending rows stay."""
    removed = 0
    async with engine.begin() as conn:
        for service in SERVICES:
            o = service_tables[service].outbox
            result = await conn.execute(
                delete(o).where(
                    o.c.status == "PUBLISHED",
                    o.c.published_at < func.now() - timedelta(seconds=retention_s),
                )
            )
            removed += result.rowcount
    return removed
