"""The inbox: which events each consumer has applied.

A consumer claims an event's id in the transaction that applies the event. A
repeat finds the id taken and is skipped; a concurrent repeat waits on the
first's uncommitted row and then finds it (or, if the first rolled back,
claims it itself). So a handler's effect commits once per event.
"""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection


async def claim(conn: AsyncConnection, inbox: Table, consumer: str, event_id: str) -> bool:
    """Record `event_id` in `inbox` (db.kit_tables.inbox) as applied by `consumer`;
    False if it already was."""
    result = await conn.execute(
        insert(inbox)
        .values(consumer=consumer, event_id=event_id)
        .on_conflict_do_nothing(index_elements=[inbox.c.consumer, inbox.c.event_id])
        .returning(inbox.c.event_id)
    )
    return result.first() is not None
