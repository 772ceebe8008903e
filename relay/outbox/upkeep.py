"""The statements of the operators' commands, the metrics and pruning: counts,
dead letters, their re-drive, and the deletion of old published rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, Table, and_, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection


async def counts(conn: AsyncConnection, o: Table) -> tuple[int, int, int, float | None]:
    """Pending, failed, published in the last minute, and the oldest pending row's age (s)."""
    last_minute = func.now() - func.make_interval(0, 0, 0, 0, 0, 1)
    oldest = func.now() - func.min(o.c.created_at).filter(o.c.status == "PENDING")
    row = (
        await conn.execute(
            select(
                func.count().filter(o.c.status == "PENDING"),
                func.count().filter(o.c.status == "FAILED"),
                func.count().filter(
                    and_(o.c.status == "PUBLISHED", o.c.published_at > last_minute)
                ),
                func.extract("epoch", oldest),
            )
        )
    ).one()
    pending, failed, recent, lag = row
    return pending, failed, recent, float(lag) if lag is not None else None


async def failed_rows(conn: AsyncConnection, o: Table) -> Sequence[Row[Any]]:
    """The dead letters: rows FAILED after their last attempt, in `seq` order."""
    return (await conn.execute(select(o).where(o.c.status == "FAILED").order_by(o.c.seq))).all()


async def requeue_failed(conn: AsyncConnection, o: Table, event_ids: list[str] | None) -> int:
    """FAILED rows (these, or all) PENDING again with a fresh count, due at once."""
    query = (
        update(o)
        .where(o.c.status == "FAILED")
        .values(status="PENDING", attempts=0, next_attempt_at=func.now())
    )
    if event_ids is not None:
        query = query.where(o.c.event_id.in_(event_ids))
    return (await conn.execute(query)).rowcount


async def delete_published(conn: AsyncConnection, o: Table, retention_s: int) -> int:
    """Delete published rows older than the retention; failed and pending rows stay."""
    result = await conn.execute(
        delete(o).where(
            o.c.status == "PUBLISHED",
            o.c.published_at < func.now() - timedelta(seconds=retention_s),
        )
    )
    return result.rowcount
