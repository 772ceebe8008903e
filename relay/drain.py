"""What both relay loops do between waits: connect to the broker, drain, prune.

Each works on the outboxes it is handed (db.kit_tables.RelayTables.outboxes).

A pass over one service that fails (PostgreSQL or NATS away) is logged and
retried next round; a broker fault ends the round, since every other service
would only fail the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from nats.aio.client import Client as NatsClient
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from db.kit_tables import schema_of
from messaging.connection import connect
from relay import outbox
from relay.config import RelayConfig
from relay.pass_connection import PassConnection
from relay.polling import Fence, relay_pass
from relay.stats import RelayStats
from settings_slices import NatsConfig

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 60.0


async def connect_broker(nats: NatsConfig, stop: asyncio.Event) -> NatsClient | None:
    # No buffering while disconnected: a publish the relay saw fail must not be
    # flushed later, behind events published since, as a late duplicate.
    return await connect(nats, "saga-relay", stop, buffer_while_disconnected=False)


async def drain(
    passes: PassConnection,
    js: Any,
    outboxes: Sequence[Table],
    partitions: Sequence[int] | None,
    config: RelayConfig,
    stats: RelayStats,
    fence: Fence | None = None,
    *,
    retrying_only: bool = False,
) -> set[str]:
    """One pass per outbox in `outboxes`; the services of those that published a full batch."""
    busy = set()
    for table in outboxes:
        schema = schema_of(table)
        try:
            result = await relay_pass(
                passes, js, table, partitions, config, fence, retrying_only=retrying_only
            )
        except Exception:  # PostgreSQL or NATS away: the next round retries
            log.exception("relay pass over %s failed", schema)
            continue
        stats.add(result)
        if result.broker_error is not None:
            log.warning("broker unavailable (%s); backing off", result.broker_error)
            return set()  # the other services would only fail the same way
        if result.published >= config.batch_size:
            busy.add(schema)
    return busy


async def prune_published(engine: AsyncEngine, outboxes: Sequence[Table], retention_s: int) -> int:
    """Delete published rows older than the retention; failed and pending rows stay."""
    removed = 0
    async with engine.begin() as conn:
        for table in outboxes:
            removed += await outbox.delete_published(conn, table, retention_s)
    return removed


async def prune(engine: AsyncEngine, outboxes: Sequence[Table], retention_s: int) -> None:
    try:
        await prune_published(engine, outboxes, retention_s)
    except Exception:  # PostgreSQL away: prune next time
        log.exception("pruning published outbox rows failed")
