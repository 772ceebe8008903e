"""The CDC relay's loop (`SAGA_RELAY_MODE=cdc`): read the slot, one pass after another.

One CDC relay reads at a time (relay.slot's reader lock); others stand by.
The reader first drains, the polling way, what committed before the slot
existed or while it was lost, and runs the retry sweep (the polling pass over
rows with a next attempt set) every `relay_poll_interval_s`: retries are the
rows', so the slot moves on past an event that keeps failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import asyncpg
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import asyncpg_dsn, create_engine
from db.kit_tables import RelayTables
from messaging.stream import ensure_stream
from relay import metrics, slot
from relay.cdc import CdcRelay
from relay.config import RelayConfig, config_from
from relay.drain import PRUNE_EVERY_S, connect_broker, drain, prune
from relay.pass_connection import PassConnection
from relay.stats import RelayStats
from settings_slices import RelaySettings

log = logging.getLogger(__name__)


class _Reader:
    """The slot's reader and the polling chores it does beside its passes."""

    def __init__(
        self,
        engine: AsyncEngine,
        js: Any,
        config: RelayConfig,
        stats: RelayStats,
        tables: RelayTables,
    ) -> None:
        self.engine, self.js, self.config, self.stats = engine, js, config, stats
        self.passes = PassConnection(engine)
        self.outboxes = tables.outboxes

    async def drain_pending(self) -> None:
        """Every PENDING row: what committed before the slot existed, or while it was lost."""
        while await drain(self.passes, self.js, self.outboxes, None, self.config, self.stats):
            pass  # full batches: more is waiting

    async def sweep(self) -> None:
        """Rows with a next attempt set: failed, re-driven, or queued behind one of those."""
        await drain(
            self.passes,
            self.js,
            self.outboxes,
            None,
            self.config,
            self.stats,
            retrying_only=True,
        )


async def run_cdc(
    relay_settings: RelaySettings, stop: asyncio.Event, stats: RelayStats, tables: RelayTables
) -> None:
    """Deliver from the slot into `tables`' outboxes until `stop`; stand by while
    another relay reads it."""
    engine = create_engine(relay_settings.database_url, pool_size=2)
    exporter = await metrics.export(
        relay_settings.metrics, engine, tables, stats, lambda: tables.partitions
    )
    try:
        client = await connect_broker(relay_settings.nats, stop)
        if client is None:
            return
        try:
            js = client.jetstream()
            await ensure_stream(js, replicas=relay_settings.stream_replicas)
            reader = _Reader(engine, js, config_from(relay_settings), stats, tables)
            try:
                await _read(relay_settings, stop, reader)
            finally:
                await reader.passes.close()
        finally:
            with contextlib.suppress(Exception):
                await client.drain()
    finally:
        if exporter is not None:
            exporter.close()
        await engine.dispose()


async def _read(relay_settings: RelaySettings, stop: asyncio.Event, reader: _Reader) -> None:
    conn: asyncpg.Connection | None = None
    relay: CdcRelay | None = None
    last_prune = next_sweep = 0.0
    delay = relay_settings.cdc_poll_s
    try:
        while not stop.is_set():
            try:
                if conn is None or conn.is_closed():
                    conn, relay = None, None
                    candidate = await asyncpg.connect(asyncpg_dsn(relay_settings.database_url))
                    if not await slot.take_reader_lock(candidate):
                        await candidate.close()  # another relay reads the slot: stand by
                        await _wait(stop, 1.0)
                        continue
                    conn = candidate
                    await slot.ensure_slot(conn)
                    await reader.drain_pending()  # before the slot, or while it was down
                    relay = CdcRelay(conn, reader.engine, reader.js, reader.config, reader.outboxes)
                assert relay is not None
                if time.monotonic() >= next_sweep:
                    await reader.sweep()
                    next_sweep = time.monotonic() + relay_settings.poll_interval_s
                result = await relay.pass_once()
                reader.stats.add(result)
                if time.monotonic() - last_prune > PRUNE_EVERY_S:
                    await prune(reader.engine, reader.outboxes, relay_settings.retention_s)
                    last_prune = time.monotonic()
                if result.broker_error is not None:
                    log.info("broker unavailable (%s); the slot stays put", result.broker_error)
                    delay = _longer(delay)
                else:
                    delay = relay_settings.cdc_poll_s
                    if result.claimed:
                        continue
            except asyncpg.PostgresError as err:
                if getattr(err, "sqlstate", None) in slot.SLOT_LOST and conn is not None:
                    await slot.recreate_slot(conn)
                    await reader.drain_pending()
                else:
                    log.warning("CDC pass failed: %s; retrying", err)
                delay = _longer(delay)
            except SQLAlchemyError as err:  # the outbox's statements, on the engine's pool
                log.warning("CDC pass failed: %s; retrying", err)
                delay = _longer(delay)
            except (OSError, asyncpg.InterfaceError) as err:
                log.warning("PostgreSQL unreachable (%s); retrying", err)
                if conn is not None and not conn.is_closed():
                    conn.terminate()
                conn = None
                delay = _longer(delay)
            await _wait(stop, delay)
    finally:
        if conn is not None and not conn.is_closed():
            await conn.close()


def _longer(delay: float) -> float:
    return min(max(delay * 2, 0.2), 5.0)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
