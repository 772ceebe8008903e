"""CDC relay mode: the outbox read from PostgreSQL's WAL by logical decoding.

The seed's Debezium outbox router, without Kafka Connect: the publication
`saga_outbox` (migration 0008) publishes inserts into the outbox tables,
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

This module is one pass (`CdcRelay.pass_once`); relay.cdc_loop runs them, and
relay.slot handles the slot.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import asyncpg
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from db.kit_tables import schema_of
from relay import outbox, slot
from relay.config import RelayConfig
from relay.pgoutput import ProtocolError, Reader, Transaction
from relay.publisher import publish_chain, record_failure
from relay.stats import PassResult


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
    read and written through `engine`, with the polling relay's own statements,
    in the `outboxes` it serves: a row of any other table stops the pass."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        engine: AsyncEngine,
        js: Any,
        config: RelayConfig,
        outboxes: Sequence[Table],
    ) -> None:
        self._conn, self._engine, self._js, self._config = conn, engine, js, config
        self._outboxes = {schema_of(table): table for table in outboxes}

    async def pass_once(self) -> PassResult:
        """One peek: `claimed` rows settled; with a `broker_error`, the slot stayed put."""
        flushed = await slot.flushed_lsn(self._conn)
        changes = await slot.peek(self._conn, flushed, self._config.batch_size)
        reader = Reader()  # a fresh decoding session announces its relations again
        done: list[Transaction] = []
        for change in changes:
            committed = reader.feed(int(change["lsn"]), bytes(change["data"]))
            if committed is not None:
                done.append(committed)
        if not done:
            await self._advance(flushed)
            return PassResult()
        served = _by_service(done, set(self._outboxes))
        plans = {schema: await self._plan(schema, rows) for schema, rows in served}
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
        async with self._engine.connect() as conn:
            table = self._outboxes[schema]
            pending = await outbox.pending_among(conn, table, [r.event_id for r in rows])
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
        table = self._outboxes[schema]
        async with self._engine.begin() as conn:
            result.published += len(plan.published)
            result.lag_ms += await outbox.mark_published(conn, table, plan.published)
            for row, error in plan.failures:
                dead = await record_failure(
                    conn, self._js, table, row.event_id, error, self._config
                )
                result.failed += 1
                result.dead_lettered += int(dead)
            await outbox.hand_to_sweep(conn, table, plan.handed)

    async def _advance(self, lsn: int) -> None:
        await slot.advance(self._conn, lsn)


def _by_service(done: list[Transaction], served: set[str]) -> list[tuple[str, list[Any]]]:
    """The committed rows of each service in `served`, in WAL order."""
    rows: dict[str, list[Any]] = {}
    for tx in done:
        for relation, row in tx.rows:
            if relation.schema not in served:  # names a table in relay.outbox's statements
                raise ProtocolError(f"an insert into {relation.schema}.outbox")
            rows.setdefault(relation.schema, []).append(_as_outbox_row(row))
    return list(rows.items())


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
