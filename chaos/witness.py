"""The outbox rows the relay published, kept before its pruning deletes them.

The chaos run gives the relay a short retention (ChaosPlan.outbox_retention_s),
so that a long run shows the outbox staying bounded. Pruned rows would take
their evidence with them: the stream audit checks that every PUBLISHED row is
in JetStream, in its aggregate's order. So the witness reads, every few
seconds, the rows published since its last read that answered, less an
overlap (a settle's `published_at` is its transaction's start, which can
commit later), and the stream audit asks the outbox and the witness together.
A row is missed only if no read answers between its commit and its pruning:
the retention must outlast the longest PostgreSQL outage plus the overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.stream_order import published_events

OVERLAP = timedelta(seconds=60)


@dataclass
class Witnessed:
    rows: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    since: datetime | None = None  # PostgreSQL's clock at the last read that answered
    reads: int = 0
    failed_reads: int = 0


async def witness_once(seen: Witnessed, engine: AsyncEngine, outboxes: Sequence[Table]) -> None:
    async with engine.connect() as conn:
        now = await conn.scalar(select(func.now()))
    since = None if seen.since is None else seen.since - OVERLAP
    seen.rows.update(await published_events(engine, outboxes, since=since))
    seen.since = now
    seen.reads += 1


async def witness(
    seen: Witnessed, engine: AsyncEngine, outboxes: Sequence[Table], every_s: float = 5.0
) -> None:
    """Read until cancelled; a read the database does not answer is tried next time."""
    while True:
        try:
            async with asyncio.timeout(10.0):
                await witness_once(seen, engine, outboxes)
        except Exception:  # down or cut off by a fault: the next read covers the gap
            seen.failed_reads += 1
        await asyncio.sleep(every_s)
