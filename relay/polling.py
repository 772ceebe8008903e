"""One pass of the polling relay over one service's outbox (the table it is handed).

Claim a batch of PENDING rows for a while (one statement, SKIP LOCKED, so
two relays never claim the same row), group them by aggregate in `seq` order —
which is commit order, see db.unit_of_work.insert_events — publish each
aggregate's chain in order while the chains go concurrently, and settle the
claim in one statement: what JetStream acknowledged is PUBLISHED, the rest is
released. A failed publish stops its aggregate's chain (later events of that
aggregate wait), counts an attempt and backs off; after the last attempt the
row is FAILED and copied to the dead-letter subject, and its aggregate moves
on. Both statements commit on their own: a pass is three round trips (claim,
publish, settle), and a relay that dies mid-pass leaves its claim to expire.

Rows are chosen by status, never by a "highest seq seen" watermark, so a row
whose transaction committed after a later-numbered one is still published.
Restricted to rows with a next attempt set (`retrying_only`), the same pass is
the CDC relay's retry sweep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Row, Table

from db.kit_tables import schema_of
from relay import outbox
from relay.config import RelayConfig
from relay.pass_connection import PassConnection
from relay.publisher import publish_chain, record_failure
from relay.stats import PassResult


class Fence(Protocol):
    """The leases a pass works under (relay.leases.PartitionLeases)."""

    instance_id: str
    lease_table: Table  # where the leases it holds are written

    def confirm(self, epochs: Mapping[int, int]) -> bool: ...

    def deadline(self) -> float: ...


async def relay_pass(
    passes: PassConnection,
    js: Any,
    table: Table,
    partitions: Sequence[int] | None,
    config: RelayConfig,
    fence: Fence | None = None,
    *,
    retrying_only: bool = False,
) -> PassResult:
    """One claim-publish-mark round over `partitions` (all when None) of the outbox `table`.

    `retrying_only`: only rows with a next attempt set — those that failed, were
    re-driven or were queued behind one by the CDC relay (its retry sweep)."""
    result = PassResult()
    schema = schema_of(table)
    owner = fence.instance_id if fence is not None else None
    leases = fence.lease_table if fence is not None else None
    # The claim and the settling commit on their own (autocommit), so no
    # transaction (no BEGIN, no COMMIT: two round trips) is open across the publishes.
    rows = await outbox.claim(
        passes,
        table,
        config.batch_size,
        partitions,
        claim_ttl_s=config.claim_ttl_s,
        retrying_only=retrying_only,
        owner=owner,
        leases=leases,
    )
    result.claimed = len(rows)
    if not rows:
        return result
    # Under leases: still the ones we were granted, or stand down.
    if fence is not None and not fence.confirm({r.partition: r.lease_epoch for r in rows}):
        await outbox.settle(passes, table, rows, published=[])
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
    failed = [str(row.event_id) for row, _ in failures]
    result.lag_ms = await outbox.settle(passes, table, rows, published, kept=failed)
    if failures:
        async with passes.engine.begin() as tx:
            for row, error in failures:
                dead = await record_failure(tx, js, table, str(row.event_id), error, config)
                result.failed += 1
                result.dead_lettered += int(dead)
    return result


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
