"""One pass of the polling relay over one service's outbox.

Claim a batch of PENDING rows (FOR UPDATE SKIP LOCKED, so two relays never
hold the same row), group them by aggregate in `seq` order — which is commit
order, see db.unit_of_work.insert_events — publish each aggregate's chain in
order while the chains go concurrently, and mark what JetStream acknowledged
in one statement. A failed publish stops its aggregate's chain (later events
of that aggregate wait), counts an attempt and backs off; after the last
attempt the row is FAILED and copied to the dead-letter subject, and its
aggregate moves on.

Rows are chosen by status, never by a "highest seq seen" watermark, so a row
whose transaction committed after a later-numbered one is still published.
Restricted to rows with a next attempt set (`retrying_only`), the same pass is
the CDC relay's retry sweep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from functools import cache
from typing import Any, Protocol

from sqlalchemy import Row, Select, bindparam, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.tables import service_tables
from relay.publisher import (
    PassResult,
    RelayConfig,
    mark_published,
    publish_chain,
    record_failure,
    retrying_ahead,
)


class Fence(Protocol):
    """The leases a pass works under (relay.leases.PartitionLeases)."""

    async def hold(self, conn: AsyncConnection, partitions: Collection[int]) -> bool: ...

    def deadline(self) -> float: ...


async def relay_pass(
    engine: AsyncEngine,
    js: Any,
    schema: str,
    partitions: Sequence[int] | None,
    config: RelayConfig,
    fence: Fence | None = None,
    *,
    retrying_only: bool = False,
) -> PassResult:
    """One claim-publish-mark round over `partitions` (all when None).

    `retrying_only`: only rows with a next attempt set — those that failed, were
    re-driven or were queued behind one by the CDC relay (its retry sweep)."""
    result = PassResult()
    async with engine.connect() as conn, conn.begin():
        query = _claim(schema, config.batch_size, partitions is not None, retrying_only)
        params = {"partitions": list(partitions)} if partitions is not None else {}
        rows = (await conn.execute(query, params)).all()
        result.claimed = len(rows)
        if not rows:
            return result
        # Under leases: lock them against takeover for this pass, or stand down.
        if fence is not None and not await fence.hold(conn, {r.partition for r in rows}):
            await conn.rollback()
            return PassResult()
        deadline = fence.deadline() if fence is not None else None
        chains = _ready_chains(rows)
        outcomes = await asyncio.gather(
            *(publish_chain(js, schema, c, config, deadline) for c in chains)
        )
        published = [event_id for o in outcomes for event_id in o.published]
        failures = [o.failure for o in outcomes if o.failure is not None]
        result.duplicates = sum(o.duplicates for o in outcomes)
        result.broker_error = next((o.broker_error for o in outcomes if o.broker_error), None)
        result.published = len(published)
        result.lag_ms = await mark_published(conn, schema, published)
        for row, error in failures:
            dead = await record_failure(conn, js, schema, str(row.event_id), error, config)
            result.failed += 1
            result.dead_lettered += int(dead)
    return result


# Statements built once per shape: building and keying them anew on every pass
# was most of an idle relay's CPU.
@cache
def _claim(schema: str, batch_size: int, partitioned: bool, retrying_only: bool) -> Select[Any]:
    outbox = service_tables[schema].outbox
    # Neither a row still waiting to retry nor anything queued behind one in
    # its aggregate: a stuck aggregate must not fill every batch.
    waiting_ahead = retrying_ahead(outbox, including_itself=False, only_not_due=True)
    # How many PENDING rows of its aggregate stand before each claimed row,
    # claimable or not: where this batch holds fewer, one is held elsewhere.
    earlier = outbox.alias("before_it")
    pending_before = (
        select(func.count())
        .where(
            earlier.c.aggregate_type == outbox.c.aggregate_type,
            earlier.c.aggregate_id == outbox.c.aggregate_id,
            earlier.c.status == "PENDING",
            earlier.c.seq < outbox.c.seq,
        )
        .scalar_subquery()
    )
    query = (
        select(outbox, pending_before.label("pending_before"))
        .where(
            outbox.c.status == "PENDING",
            or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= func.now()),
            ~waiting_ahead,
        )
        .order_by(outbox.c.seq)
        .limit(batch_size)
        .with_for_update(skip_locked=True, of=outbox)
    )
    if partitioned:
        query = query.where(outbox.c.partition.in_(bindparam("partitions", expanding=True)))
    if retrying_only:  # what ix_<service>_outbox_retrying holds
        query = query.where(outbox.c.next_attempt_at.is_not(None))
    return query


def _ready_chains(rows: Sequence[Row[Any]]) -> list[list[Row[Any]]]:
    """Per-aggregate chains in seq order, each cut at its first gap.

    A gap is a PENDING row of the aggregate that this pass did not claim
    (another transaction holds it): everything after it waits, or the
    aggregate would be published out of order. The claim counted, for each
    row, the PENDING rows before it; a chain holding fewer has a gap there.
    """
    chains: dict[tuple[str, str], list[Row[Any]]] = {}
    for row in rows:
        chains.setdefault((row.aggregate_type, row.aggregate_id), []).append(row)
    ready = []
    for chain in chains.values():
        cut = []
        for claimed_before, row in enumerate(chain):
            if row.pending_before != claimed_before:
                break
            cut.append(row)
        if cut:
            ready.append(cut)
    return ready
