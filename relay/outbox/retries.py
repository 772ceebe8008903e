"""The statements of a failed publish: the row under its lock, its attempt counted,
and the CDC relay's hand-over of rows to the retry sweep."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.outbox.claims import retrying_ahead


async def lock_pending(conn: AsyncConnection, outbox: Table, event_id: str) -> Row[Any] | None:
    """The event's row under its lock while it is PENDING; None once settled."""
    query = (
        select(outbox)
        .where(outbox.c.event_id == event_id, outbox.c.status == "PENDING")
        .with_for_update()
    )
    return (await conn.execute(query)).first()


@dataclass(frozen=True)
class Attempt:
    """A failed attempt at publishing an event, as its row records it."""

    attempts: int  # counted so far, this one included
    error: str
    dead: bool  # the last one: the row is FAILED, a dead letter
    retry_in_s: float


async def record_attempt(
    conn: AsyncConnection, outbox: Table, event_id: str, attempt: Attempt
) -> None:
    """Count a failed attempt in the row: due again after `retry_in_s`, PENDING until the last."""
    await conn.execute(
        update(outbox)
        .where(outbox.c.event_id == event_id)
        .values(
            attempts=attempt.attempts,
            last_error=attempt.error,
            status="FAILED" if attempt.dead else "PENDING",
            next_attempt_at=func.now() + timedelta(seconds=attempt.retry_in_s),
        )
    )


async def pending_among(
    conn: AsyncConnection, outbox: Table, event_ids: list[str]
) -> dict[str, bool]:
    """Which of these events are still PENDING → whether the retry sweep has each
    (it, or an earlier row of its aggregate, has a next attempt set)."""
    swept = retrying_ahead(outbox, including_itself=True, only_not_due=False)
    found = await conn.execute(
        select(outbox.c.event_id, swept).where(
            outbox.c.event_id.in_(event_ids), outbox.c.status == "PENDING"
        )
    )
    return {str(event_id): bool(is_swept) for event_id, is_swept in found}


async def hand_to_sweep(conn: AsyncConnection, outbox: Table, event_ids: list[str]) -> None:
    """Due at once, so the sweep takes them, in order, behind the row they wait for."""
    if not event_ids:
        return
    await conn.execute(
        update(outbox)
        .where(
            outbox.c.event_id.in_(event_ids),
            outbox.c.status == "PENDING",
            outbox.c.next_attempt_at.is_(None),  # one already set is a backoff: kept
        )
        .values(next_attempt_at=func.now())
    )
