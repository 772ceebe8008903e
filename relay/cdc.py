"""CDC relay mode: the outbox read from PostgreSQL's WAL by logical decoding.

The seed's Debezium outbox router, without Kafka Connect: the publication
`saga_outbox` (migration 0008) publishes inserts into the four outbox tables,
and a logical replication slot of the same name (pgoutput) keeps the WAL
from the first change not yet delivered. Each pass peeks the slot's next
committed transactions (up to the WAL flushed when it began), publishes every
outbox row still PENDING exactly as the polling relay does (the same
publish_chain: subject, headers, `Nats-Msg-Id` = event id, trace context),
marks what JetStream acknowledged, and only when every row of the pass is
settled advances the slot past them. A relay killed anywhere in between
peeks the same transactions again: rows already marked are skipped, and a
row published but not yet marked is dropped by JetStream as a repeat of its
`Nats-Msg-Id`. Per-aggregate order holds because commit order is `seq`
order per aggregate (db.unit_of_work.insert_events), and each aggregate's
rows go out one after another in WAL order.

The slot only holds what committed after it was created: at start, and
whenever the slot had to be made again (dropped, or given up by PostgreSQL
past max_slot_wal_keep_size), the rows left PENDING are drained the polling
way first. One CDC relay reads at a time (a session advisory lock); others
stand by. A pass that finds nothing of ours advances the slot to the flushed
WAL all the same, so an idle system's slot holds nothing back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import asyncpg

from db.tables import SERVICES
from relay.pgoutput import ProtocolError, Reader, Transaction
from relay.publisher import RelayConfig, dead_letter, publish_chain
from settings import Settings

log = logging.getLogger(__name__)

SLOT = "saga_outbox"
PUBLICATION = "saga_outbox"
_PEEK = (
    "SELECT lsn, data FROM pg_logical_slot_peek_binary_changes($1, $2::pg_lsn, $3,"
    " 'proto_version', '1', 'publication_names', $4)"
)
_READER_LOCK = "SELECT pg_try_advisory_lock(hashtext('saga-outbox-cdc-reader'))"
# The slot is gone (dropped), or PostgreSQL gave up its WAL (invalidated).
_SLOT_LOST = {"42704", "55000"}


class PassIncomplete(RuntimeError):
    """Some row of the pass is neither acknowledged nor dead-lettered: try again later."""


async def ensure_slot(conn: asyncpg.Connection) -> bool:
    """Create the slot if missing; True when it was created now."""
    exists = await conn.fetchval("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", SLOT)
    if exists:
        return False
    try:
        await conn.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", SLOT)
    except asyncpg.DuplicateObjectError:
        return False  # another relay created it first
    log.info("created logical replication slot %s", SLOT)
    return True


async def recreate_slot(conn: asyncpg.Connection) -> None:
    with contextlib.suppress(asyncpg.UndefinedObjectError):
        await conn.execute("SELECT pg_drop_replication_slot($1)", SLOT)
    await ensure_slot(conn)
    log.warning("replication slot %s was lost and made again", SLOT)


async def retained_wal_bytes(conn: asyncpg.Connection) -> int | None:
    """WAL the slot keeps from being recycled: the CDC relay's lag in bytes (None: no slot)."""
    value = await conn.fetchval(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)"
        " FROM pg_replication_slots WHERE slot_name = $1",
        SLOT,
    )
    return None if value is None else int(value)


class CdcRelay:
    """The slot's reader; `pass_once` delivers what the slot holds, up to a batch."""

    def __init__(
        self, conn: asyncpg.Connection, js: Any, config: RelayConfig, stats: Any = None
    ) -> None:
        """`stats`: a relay.service.RelayStats to count into (published, duplicates, ...)."""
        from relay.service import RelayStats

        self._conn, self._js, self._config = conn, js, config
        # Aggregates publish side by side, but one connection runs one statement at a time.
        self._db = asyncio.Lock()
        self._attempts: dict[str, int] = {}
        self.stats = stats if stats is not None else RelayStats()

    async def pass_once(self) -> int:
        """Rows delivered this pass; 0 when the slot had nothing of ours."""
        flushed = int(await self._conn.fetchval("SELECT pg_current_wal_flush_lsn()"))
        changes = await self._conn.fetch(_PEEK, SLOT, flushed, self._config.batch_size, PUBLICATION)
        reader = Reader()  # a fresh decoding session announces its relations again
        done: list[Transaction] = []
        for change in changes:
            committed = reader.feed(int(change["lsn"]), bytes(change["data"]))
            if committed is not None:
                done.append(committed)
        if not done:
            await self._advance(flushed)
            return 0
        chains: dict[tuple[str, str], list[Any]] = {}
        for tx in done:
            for relation, row in tx.rows:
                if relation.schema not in SERVICES:  # names a table in SQL below
                    raise ProtocolError(f"an insert into {relation.schema}.outbox")
                key = (relation.schema, f"{row['aggregate_type']}:{row['aggregate_id']}")
                chains.setdefault(key, []).append(_as_outbox_row(row))
        pending = await self._still_pending(chains)
        todo = {key: [r for r in rows if r.event_id in pending] for key, rows in chains.items()}
        delivered = await asyncio.gather(
            *(self._deliver(schema, rows) for (schema, _), rows in todo.items() if rows)
        )
        # One statement per service for the whole pass, not one per aggregate.
        by_schema: dict[str, list[str]] = {}
        for schema, ids, _ in delivered:
            by_schema.setdefault(schema, []).extend(ids)
        for schema, ids in by_schema.items():
            await self._mark(schema, ids)
        if not all(settled for _, _, settled in delivered):
            raise PassIncomplete("some events were not acknowledged; the slot stays put")
        # Every row acknowledged (or dead-lettered) and marked: let go of their WAL.
        await self._advance(done[-1].commit_lsn)
        return sum(len(rows) for rows in todo.values())

    async def _deliver(self, schema: str, rows: list[Any]) -> tuple[str, list[str], bool]:
        """Publish an aggregate's rows in order: (schema, acknowledged ids, all settled?)."""
        outcome = await publish_chain(self._js, schema, rows, self._config, None)
        self.stats.published += len(outcome.published) - outcome.duplicates
        self.stats.duplicates += outcome.duplicates
        acked = list(outcome.published)
        if outcome.failure is not None:
            row, error = outcome.failure
            if not await self._fail(schema, row, error):
                return schema, acked, False
            rest = rows[len(outcome.published) + 1 :]
            if rest:  # dead-lettered: its aggregate moves on
                _, more, settled = await self._deliver(schema, rest)
                return schema, acked + more, settled
            return schema, acked, True
        return schema, acked, outcome.broker_error is None

    async def _still_pending(self, chains: dict[tuple[str, str], list[Any]]) -> set[str]:
        pending: set[str] = set()
        by_schema: dict[str, list[str]] = {}
        for (schema, _), rows in chains.items():
            by_schema.setdefault(schema, []).extend(r.event_id for r in rows)
        for schema, ids in by_schema.items():
            found = await self._conn.fetch(
                f"SELECT event_id::text FROM {schema}.outbox"
                " WHERE event_id = ANY($1::uuid[]) AND status = 'PENDING'",
                ids,
            )
            pending |= {r["event_id"] for r in found}
        return pending

    async def _mark(self, schema: str, ids: list[str]) -> None:
        if not ids:
            return
        async with self._db:
            lags = await self._conn.fetch(
                f"UPDATE {schema}.outbox SET status = 'PUBLISHED', published_at = now()"
                " WHERE event_id = ANY($1::uuid[]) AND status = 'PENDING'"
                " RETURNING extract(epoch FROM published_at - created_at) * 1000 AS lag_ms",
                ids,
            )
        self.stats.lag_ms.extend(float(r["lag_ms"]) for r in lags)

    async def _fail(self, schema: str, row: Any, error: BaseException) -> bool:
        """Count an attempt of an event the broker refuses; True once it is dead-lettered."""
        attempts = self._attempts.get(row.event_id, 0) + 1
        self._attempts[row.event_id] = attempts
        message = f"{type(error).__name__}: {error}"[:1000]
        dead = attempts >= self._config.max_attempts
        if dead:
            await dead_letter(self._js, schema, row, message, self._config)
            self.stats.dead_lettered += 1
            log.error(
                "event %s dead-lettered after %d attempts: %s", row.event_id, attempts, message
            )
        await self._conn.execute(
            f"UPDATE {schema}.outbox SET attempts = $2, last_error = $3,"
            " status = CASE WHEN $4 THEN 'FAILED' ELSE status END WHERE event_id = $1::uuid",
            row.event_id,
            attempts,
            message,
            dead,
        )
        return dead

    async def _advance(self, lsn: int) -> None:
        await self._conn.execute("SELECT pg_replication_slot_advance($1, $2::pg_lsn)", SLOT, lsn)


def _as_outbox_row(row: dict[str, str | None]) -> Any:
    """The decoded text values as the row the polling relay reads."""
    return SimpleNamespace(
        event_id=str(row["event_id"]),
        aggregate_type=row["aggregate_type"],
        aggregate_id=row["aggregate_id"],
        event_type=row["event_type"],
        payload=json.loads(row["payload"] or "{}"),
        headers=json.loads(row["headers"] or "{}"),
        created_at=datetime.fromisoformat(str(row["created_at"])),
    )


async def run_cdc_relay(
    settings: Settings,
    stop: asyncio.Event,
    drain: Callable[[Any], Awaitable[None]],
    prune: Callable[[], Awaitable[None]],
    stats: Any = None,
) -> None:
    """Deliver from the slot until `stop`; stand by while another relay reads it.

    `drain(js)` publishes the rows left PENDING the polling way (before the slot
    existed, or while it was lost); `prune()` removes old published rows."""
    from consumers.stream import ensure_stream
    from relay.service import PRUNE_EVERY_S, asyncpg_dsn, config_from, connect_nats

    client = await connect_nats(settings.nats_target)
    conn: asyncpg.Connection | None = None
    relay: CdcRelay | None = None
    last_prune = 0.0
    try:
        js = client.jetstream()
        await ensure_stream(js)
        delay = settings.relay_cdc_poll_s
        while not stop.is_set():
            try:
                if conn is None or conn.is_closed():
                    conn, relay = None, None
                    candidate = await asyncpg.connect(asyncpg_dsn(settings.database_target))
                    if not await candidate.fetchval(_READER_LOCK):
                        await candidate.close()  # another relay reads the slot: stand by
                        await _wait(stop, 1.0)
                        continue
                    conn = candidate
                    await ensure_slot(conn)
                    await drain(js)  # what committed before the slot, or while it was down
                    relay = CdcRelay(conn, js, config_from(settings), stats)
                assert relay is not None
                delivered = await relay.pass_once()
                relay.stats.passes += 1
                if time.monotonic() - last_prune > PRUNE_EVERY_S:
                    await prune()
                    last_prune = time.monotonic()
                delay = settings.relay_cdc_poll_s
                if delivered:
                    continue
            except asyncpg.PostgresError as err:
                if getattr(err, "sqlstate", None) in _SLOT_LOST and conn is not None:
                    await recreate_slot(conn)
                    await drain(js)
                else:
                    log.warning("CDC pass failed: %s; retrying", err)
                delay = _longer(delay)
            except PassIncomplete as err:
                log.info("%s", err)
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
        with contextlib.suppress(Exception):
            await client.drain()


def _longer(delay: float) -> float:
    return min(max(delay * 2, 0.2), 5.0)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
