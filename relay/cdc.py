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

An event the broker refuses fails as in the polling relay (the same
record_failure: attempts counted in its row, a backoff, the dead-letter subject
after the last) and is settled for the slot: its retries, and the later rows of
its aggregate (handed on, due at once), belong to the retry sweep, the polling
pass restricted to rows with a next attempt set, which the reader runs every
poll interval. A pass publishes nothing of an aggregate the sweep has, so the
slot never waits for a retry and nothing overtakes one. A broker fault (NATS
away, a timeout) counts against no event and keeps the slot where it is.

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
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import asyncpg
from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.tables import SERVICES, service_tables
from relay.pgoutput import ProtocolError, Reader, Transaction
from relay.publisher import (
    PassResult,
    RelayConfig,
    mark_published,
    publish_chain,
    record_failure,
    retrying_ahead,
)
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


@dataclass
class _Plan:
    """One service's rows of a pass, and what became of them."""

    chains: list[list[Any]] = field(default_factory=list)  # to publish, per aggregate
    handed: list[str] = field(default_factory=list)  # left to the retry sweep
    published: list[str] = field(default_factory=list)
    failures: list[tuple[Any, BaseException]] = field(default_factory=list)


class CdcRelay:
    """The slot's reader; `pass_once` delivers what the slot holds, up to a batch.

    The slot is read on `conn` (which holds the reader lock); the outbox rows are
    read and written through `engine`, with the polling relay's own statements."""

    def __init__(
        self, conn: asyncpg.Connection, engine: AsyncEngine, js: Any, config: RelayConfig
    ) -> None:
        self._conn, self._engine, self._js, self._config = conn, engine, js, config

    async def pass_once(self) -> PassResult:
        """One peek: `claimed` rows settled; with a `broker_error`, the slot stayed put."""
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
            return PassResult()
        plans = {schema: await self._plan(schema, rows) for schema, rows in _by_service(done)}
        jobs = [(schema, chain) for schema, plan in plans.items() for chain in plan.chains]
        outcomes = await asyncio.gather(
            *(publish_chain(self._js, schema, chain, self._config, None) for schema, chain in jobs)
        )
        result = PassResult(claimed=sum(len(c) for _, c in jobs))
        for (schema, chain), outcome in zip(jobs, outcomes, strict=True):
            plan = plans[schema]
            plan.published += outcome.published
            result.duplicates += outcome.duplicates
            result.broker_error = result.broker_error or outcome.broker_error
            if outcome.failure is not None:
                plan.failures.append(outcome.failure)
                # Queued behind an event now retrying: the sweep publishes them after it.
                plan.handed += [r.event_id for r in chain[len(outcome.published) + 1 :]]
        for schema, plan in plans.items():
            result.claimed += len(plan.handed)
            await self._settle(schema, plan, result)
        if result.broker_error is None:
            # Every row acknowledged, failed or handed on, and so marked: let go of their WAL.
            await self._advance(done[-1].commit_lsn)
        return result

    async def _plan(self, schema: str, rows: list[Any]) -> _Plan:
        """Which of a service's rows this pass publishes, and which the retry sweep has.

        A row with a next attempt set (it failed, or was re-driven) is the sweep's,
        and so is every later row of its aggregate: publishing one of those here
        would overtake the row retrying. Rows no longer PENDING are done with."""
        outbox = service_tables[schema].outbox
        swept = retrying_ahead(outbox, including_itself=True, only_not_due=False)
        async with self._engine.connect() as conn:
            found = await conn.execute(
                select(outbox.c.event_id, swept).where(
                    outbox.c.event_id.in_([r.event_id for r in rows]), outbox.c.status == "PENDING"
                )
            )
            pending = {str(event_id): bool(is_swept) for event_id, is_swept in found}
        plan = _Plan()
        chains: dict[tuple[str, str], list[Any]] = {}
        for row in rows:
            if row.event_id not in pending:
                continue
            if pending[row.event_id]:
                plan.handed.append(row.event_id)
            else:
                chains.setdefault((row.aggregate_type, row.aggregate_id), []).append(row)
        plan.chains = list(chains.values())
        return plan

    async def _settle(self, schema: str, plan: _Plan, result: PassResult) -> None:
        """Mark, fail and hand on a service's rows of the pass, before the slot moves."""
        async with self._engine.begin() as conn:
            result.published += len(plan.published)
            result.lag_ms += await mark_published(conn, schema, plan.published)
            for row, error in plan.failures:
                dead = await record_failure(
                    conn, self._js, schema, row.event_id, error, self._config
                )
                result.failed += 1
                result.dead_lettered += int(dead)
            await _hand_to_sweep(conn, schema, plan.handed)

    async def _advance(self, lsn: int) -> None:
        await self._conn.execute("SELECT pg_replication_slot_advance($1, $2::pg_lsn)", SLOT, lsn)


def _by_service(done: list[Transaction]) -> list[tuple[str, list[Any]]]:
    """The committed rows of each service, in WAL order."""
    rows: dict[str, list[Any]] = {}
    for tx in done:
        for relation, row in tx.rows:
            if relation.schema not in SERVICES:  # names a table in the statements below
                raise ProtocolError(f"an insert into {relation.schema}.outbox")
            rows.setdefault(relation.schema, []).append(_as_outbox_row(row))
    return list(rows.items())


async def _hand_to_sweep(conn: AsyncConnection, schema: str, event_ids: list[str]) -> None:
    """Due at once, so the sweep takes them, in order, behind the row they wait for."""
    if not event_ids:
        return
    outbox = service_tables[schema].outbox
    await conn.execute(
        update(outbox)
        .where(
            outbox.c.event_id.in_(event_ids),
            outbox.c.status == "PENDING",
            outbox.c.next_attempt_at.is_(None),  # one already set is a backoff: kept
        )
        .values(next_attempt_at=func.now())
    )


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


@dataclass(frozen=True)
class Chores:
    """The polling relay's work the CDC relay has done beside its passes (relay.service)."""

    # Every PENDING row: what committed before the slot existed, or while it was lost.
    drain: Callable[[Any], Awaitable[None]]
    # Rows with a next attempt set: failed, re-driven, or queued behind one of those.
    sweep: Callable[[Any], Awaitable[None]]
    prune: Callable[[], Awaitable[None]]
    count: Callable[[PassResult], None]


async def run_cdc_relay(
    settings: Settings, stop: asyncio.Event, engine: AsyncEngine, chores: Chores
) -> None:
    """Deliver from the slot until `stop`; stand by while another relay reads it.

    The reader also runs the retry sweep every `relay_poll_interval_s`: retries
    are the rows', so the slot moves on past an event that keeps failing."""
    from messaging.stream import ensure_stream
    from relay.service import PRUNE_EVERY_S, asyncpg_dsn, config_from, connect_nats

    client = await connect_nats(settings)
    conn: asyncpg.Connection | None = None
    relay: CdcRelay | None = None
    last_prune = next_sweep = 0.0
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
                    await chores.drain(js)  # what committed before the slot, or while it was down
                    relay = CdcRelay(conn, engine, js, config_from(settings))
                assert relay is not None
                if time.monotonic() >= next_sweep:
                    await chores.sweep(js)
                    next_sweep = time.monotonic() + settings.relay_poll_interval_s
                result = await relay.pass_once()
                chores.count(result)
                if time.monotonic() - last_prune > PRUNE_EVERY_S:
                    await chores.prune()
                    last_prune = time.monotonic()
                if result.broker_error is not None:
                    log.info("broker unavailable (%s); the slot stays put", result.broker_error)
                    delay = _longer(delay)
                else:
                    delay = settings.relay_cdc_poll_s
                    if result.claimed:
                        continue
            except asyncpg.PostgresError as err:
                if getattr(err, "sqlstate", None) in _SLOT_LOST and conn is not None:
                    await recreate_slot(conn)
                    await chores.drain(js)
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
        with contextlib.suppress(Exception):
            await client.drain()


def _longer(delay: float) -> float:
    return min(max(delay * 2, 0.2), 5.0)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
