"""CDC relay mode: the outbox read from PostgreSQL's WAL by logical decoding.

The seed's Debezium outbox router, without Kafka Connect: the publication
`saga_outbox` (migration 0008) publishes inserts into the four outbox tables,
and a logical replication slot of the same name (pgoutput) keeps the WAL
from the first change not yet delivered. Each pass peeks the slot's next
transactions, in commit order, publishes every outbox row to JetStream
exactly as the polling relay does (subject, headers, `Nats-Msg-Id` = event
id), waits for each acknowledgement, marks the rows PUBLISHED, and only then
advances the slot past their commit. A relay killed anywhere in between
peeks the same transactions again; JetStream drops the repeats by their
`Nats-Msg-Id`. Per-aggregate order holds because commit order is `seq` order
per aggregate (db.unit_of_work.insert_events), and a pass publishes each
aggregate's events in WAL order, one after another (aggregates side by side).

A slot is read by one session at a time: a second CDC relay waits as a
standby until the first lets go. A slot nobody reads retains WAL; PostgreSQL
bounds that by `max_slot_wal_keep_size` (SAGA_PG_MAX_SLOT_WAL_KEEP_MB), and
the relay reports what the slot retains (`sagactl relay-status`, metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import asyncpg
import nats.errors

from db.tables import SERVICES
from relay.pgoutput import ProtocolError, Reader, Transaction
from relay.publisher import envelope_of
from settings import Settings

log = logging.getLogger(__name__)

SLOT = "saga_outbox"
PUBLICATION = "saga_outbox"
_PEEK = (
    "SELECT lsn, data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2,"
    " 'proto_version', '1', 'publication_names', $3)"
)
_SLOT_IN_USE = "55006"  # object_in_use: another session reads the slot


async def ensure_slot(conn: asyncpg.Connection) -> None:
    exists = await conn.fetchval("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", SLOT)
    if not exists:
        try:
            await conn.execute("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", SLOT)
            log.info("created logical replication slot %s", SLOT)
        except asyncpg.DuplicateObjectError:
            pass  # another relay created it first


async def retained_wal_bytes(conn: asyncpg.Connection) -> int | None:
    """WAL the slot keeps from being recycled: the CDC relay's lag in bytes (None: no slot)."""
    value = await conn.fetchval(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)"
        " FROM pg_replication_slots WHERE slot_name = $1",
        SLOT,
    )
    return None if value is None else int(value)


class CdcRelay:
    """One reader of the slot; `pass_once` delivers what the slot holds, up to a batch."""

    def __init__(self, conn: asyncpg.Connection, js: Any, batch: int, timeout_s: float) -> None:
        self._conn, self._js = conn, js
        self._batch, self._timeout_s = batch, timeout_s
        self._reader = Reader()
        self.published = 0
        self.duplicates = 0
        self.lag_ms: list[float] = []

    async def pass_once(self) -> int:
        """Rows delivered this pass; 0 when the slot had nothing new."""
        changes = await self._conn.fetch(_PEEK, SLOT, self._batch, PUBLICATION)
        # A fresh decoding session: relations are announced again before use.
        self._reader = Reader()
        done: list[Transaction] = []
        for change in changes:
            committed = self._reader.feed(int(change["lsn"]), bytes(change["data"]))
            if committed is not None:
                done.append(committed)
        if not done:
            return 0
        rows = [(relation.schema, row) for tx in done for relation, row in tx.rows]
        # Each aggregate's events in commit order; aggregates side by side.
        chains: dict[str, list[tuple[str, dict[str, str | None]]]] = {}
        for schema, row in rows:
            chains.setdefault(f"{row['aggregate_type']}:{row['aggregate_id']}", []).append(
                (schema, row)
            )
        await asyncio.gather(*(self._publish_chain(chain) for chain in chains.values()))
        by_schema: dict[str, list[str]] = {}
        for schema, row in rows:
            by_schema.setdefault(schema, []).append(str(row["event_id"]))
        await self._mark_published(by_schema)
        # Acknowledged by JetStream and marked: the slot may let go of them now.
        await self._conn.execute(
            "SELECT pg_replication_slot_advance($1, $2::pg_lsn)", SLOT, done[-1].commit_lsn
        )
        return len(rows)

    async def _publish_chain(self, chain: list[tuple[str, dict[str, str | None]]]) -> None:
        for schema, row in chain:
            await self._publish(schema, row)

    async def _publish(self, schema: str, row: dict[str, str | None]) -> None:
        if schema not in SERVICES:  # the schema names a table in SQL below
            raise ProtocolError(f"an insert into {schema}.outbox, which is no service's")
        subject, body, headers = envelope_of(schema, _as_outbox_row(row))
        ack = await self._js.publish(subject, body, headers=headers, timeout=self._timeout_s)
        if ack.duplicate:
            self.duplicates += 1
        else:
            self.published += 1

    async def _mark_published(self, by_schema: dict[str, list[str]]) -> None:
        for schema, ids in by_schema.items():
            lags = await self._conn.fetch(
                f"UPDATE {schema}.outbox SET status = 'PUBLISHED', published_at = now()"
                " WHERE event_id = ANY($1::uuid[]) AND status = 'PENDING'"
                " RETURNING extract(epoch FROM published_at - created_at) * 1000 AS lag_ms",
                ids,
            )
            self.lag_ms += [float(r["lag_ms"]) for r in lags]


def _as_outbox_row(row: dict[str, str | None]) -> Any:
    """The decoded text values as the row the polling relay reads."""
    return SimpleNamespace(
        event_id=row["event_id"],
        aggregate_type=row["aggregate_type"],
        aggregate_id=row["aggregate_id"],
        event_type=row["event_type"],
        payload=json.loads(row["payload"] or "{}"),
        headers=json.loads(row["headers"] or "{}"),
        created_at=datetime.fromisoformat(str(row["created_at"])),
    )


async def run_cdc_relay(settings: Settings, stop: asyncio.Event, stats: Any = None) -> None:
    """Deliver from the slot until `stop`; stand by while another relay holds it."""
    from consumers.stream import ensure_stream
    from relay.service import asyncpg_dsn, connect_nats

    client = await connect_nats(settings.nats_target)
    conn: asyncpg.Connection | None = None
    try:
        js = client.jetstream()
        await ensure_stream(js)
        relay: CdcRelay | None = None
        backoff = settings.relay_cdc_poll_s
        while not stop.is_set():
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(asyncpg_dsn(settings.database_target))
                    await ensure_slot(conn)
                    relay = CdcRelay(
                        conn, js, settings.relay_batch_size, settings.relay_publish_timeout_s
                    )
                assert relay is not None
                delivered = await relay.pass_once()
                if stats is not None:
                    _report(stats, relay)
                backoff = settings.relay_cdc_poll_s
                if delivered:
                    continue
            except asyncpg.PostgresError as err:
                if getattr(err, "sqlstate", None) != _SLOT_IN_USE:
                    log.warning("CDC pass failed: %s; retrying", err)
                backoff = min(max(backoff * 2, 0.2), 5.0)
            except (OSError, asyncpg.InterfaceError) as err:
                log.warning("PostgreSQL unreachable (%s); retrying", err)
                conn = None
                backoff = min(max(backoff * 2, 0.2), 5.0)
            except (nats.errors.Error, TimeoutError) as err:
                # Not delivered, so not advanced: the next pass publishes them again.
                log.warning("JetStream did not acknowledge (%s); retrying", err)
                backoff = min(max(backoff * 2, 0.2), 5.0)
            await _wait(stop, backoff)
    finally:
        if conn is not None and not conn.is_closed():
            await conn.close()
        await client.drain()


def _report(stats: Any, relay: CdcRelay) -> None:
    stats.published, stats.duplicates = relay.published, relay.duplicates
    stats.lag_ms = relay.lag_ms
    stats.passes += 1


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
