"""One pass of the relay over one service's outbox.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import nats.errors
import nats.js.errors
from opentelemetry.trace import SpanKind
from sqlalchemy import Row, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.tables import service_tables
from domain import events as wire
from observability.logs import log_context, order_id_of
from observability.tracing import TRACER
from observability.tracing import extract as extract_trace
from observability.tracing import inject as inject_trace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RelayConfig:
    batch_size: int = 500
    publish_timeout_s: float = 5.0
    max_attempts: int = 10
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 60.0


@dataclass
class PassResult:
    claimed: int = 0
    published: int = 0
    failed: int = 0
    dead_lettered: int = 0
    # Acks saying JetStream already had the event: someone published it before.
    duplicates: int = 0
    # The broker (not an event) failed: nothing was counted against the events.
    broker_error: str | None = None
    lag_ms: list[float] = field(default_factory=list)


def envelope_of(schema: str, row: Any) -> tuple[str, bytes, dict[str, str]]:
    """Subject, body and headers of an outbox row (a Row, or its columns as attributes)."""
    headers = dict(row.headers or {})
    body = wire.Envelope(
        event_id=str(row.event_id),
        source=schema,
        aggregate_type=row.aggregate_type,
        aggregate_id=row.aggregate_id,
        event_type=row.event_type,
        payload=row.payload,
        headers=headers,
        occurred_at=row.created_at,
    )
    nats_headers = {
        wire.MSG_ID: str(row.event_id),
        wire.EVENT_TYPE: row.event_type,
        wire.AGGREGATE_TYPE: row.aggregate_type,
        wire.AGGREGATE_ID: row.aggregate_id,
        wire.CORRELATION_ID: str(headers.get("correlation_id", "")),
    }
    subject = wire.subject_for(row.aggregate_type, row.event_type)
    return subject, body.model_dump_json().encode(), nats_headers


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
) -> PassResult:
    """One claim-publish-mark round over `partitions` (all when None)."""
    outbox = service_tables[schema].outbox
    result = PassResult()
    async with engine.connect() as conn, conn.begin():
        now = await _db_now(conn)
        earlier = outbox.alias("earlier")
        # Neither a row still waiting to retry nor anything queued behind one in
        # its aggregate: a stuck aggregate must not fill every batch.
        waiting_ahead = (
            select(earlier.c.seq)
            .where(
                earlier.c.aggregate_type == outbox.c.aggregate_type,
                earlier.c.aggregate_id == outbox.c.aggregate_id,
                earlier.c.status == "PENDING",
                earlier.c.seq < outbox.c.seq,
                # Matches ix_<service>_outbox_retrying, a handful of rows: without
                # it a fresh backlog's plan scanned every pending row per candidate.
                earlier.c.next_attempt_at.is_not(None),
                earlier.c.next_attempt_at > func.now(),
            )
            .exists()
        )
        query = (
            select(outbox)
            .where(
                outbox.c.status == "PENDING",
                or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= func.now()),
                ~waiting_ahead,
            )
            .order_by(outbox.c.seq)
            .limit(config.batch_size)
            .with_for_update(skip_locked=True)
        )
        if partitions is not None:
            query = query.where(outbox.c.partition.in_(list(partitions)))
        rows = (await conn.execute(query)).all()
        result.claimed = len(rows)
        if not rows:
            return result
        # Under leases: lock them against takeover for this pass, or stand down.
        if fence is not None and not await fence.hold(conn, {r.partition for r in rows}):
            await conn.rollback()
            return PassResult()
        deadline = fence.deadline() if fence is not None else None
        chains = await _ready_chains(conn, schema, rows)
        outcomes = await asyncio.gather(
            *(publish_chain(js, schema, c, config, deadline) for c in chains)
        )
        published = [event_id for o in outcomes for event_id in o.published]
        failures = [o.failure for o in outcomes if o.failure is not None]
        result.duplicates = sum(o.duplicates for o in outcomes)
        result.broker_error = next((o.broker_error for o in outcomes if o.broker_error), None)
        if published:
            await conn.execute(
                update(outbox)
                .where(outbox.c.event_id.in_(published))
                .values(status="PUBLISHED", published_at=func.now(), attempts=outbox.c.attempts + 1)
            )
        result.published = len(published)
        by_id = {str(r.event_id): r for r in rows}
        result.lag_ms = [(now - by_id[i].created_at).total_seconds() * 1000 for i in published]
        for row, error in failures:
            dead = await _record_failure(conn, js, schema, row, error, config)
            result.failed += 1
            result.dead_lettered += int(dead)
    return result


async def _db_now(conn: AsyncConnection) -> datetime:
    # The database's clock, the one created_at and next_attempt_at are written with.
    now = await conn.scalar(select(func.now()))
    assert isinstance(now, datetime)
    return now


async def _ready_chains(
    conn: AsyncConnection, schema: str, rows: Sequence[Row[Any]]
) -> list[list[Row[Any]]]:
    """Per-aggregate chains in seq order, each cut at its first gap.

    A gap is a PENDING row of the aggregate that this pass did not claim
    (another transaction holds it): everything after it waits, or the
    aggregate would be published out of order.
    """
    outbox = service_tables[schema].outbox
    chains: dict[tuple[str, str], list[Row[Any]]] = {}
    for row in rows:
        chains.setdefault((row.aggregate_type, row.aggregate_id), []).append(row)
    pending = await conn.execute(
        select(outbox.c.aggregate_type, outbox.c.aggregate_id, outbox.c.seq)
        .where(
            outbox.c.status == "PENDING",
            tuple_(outbox.c.aggregate_type, outbox.c.aggregate_id).in_(list(chains)),
            outbox.c.seq <= max(r.seq for r in rows),
        )
        .order_by(outbox.c.seq)
    )
    order: dict[tuple[str, str], list[int]] = {}
    for aggregate_type, aggregate_id, seq in pending:
        order.setdefault((aggregate_type, aggregate_id), []).append(seq)
    ready = []
    for key, chain in chains.items():
        claimed = {r.seq: r for r in chain}
        cut = []
        for seq in order.get(key, []):
            if seq not in claimed:
                break
            cut.append(claimed[seq])
        if cut:
            ready.append(cut)
    return ready


@dataclass
class ChainOutcome:
    published: list[str] = field(default_factory=list)
    failure: tuple[Row[Any], BaseException] | None = None
    duplicates: int = 0
    broker_error: str | None = None


# Failures that are the event's own: retrying the same bytes cannot help, so
# they count against its attempts. Anything else is the broker's, and only delays.
EVENT_FAULTS: tuple[type[BaseException], ...] = (
    nats.errors.MaxPayloadError,
    nats.errors.BadSubjectError,
    nats.js.errors.BadRequestError,
    ValueError,
    TypeError,
)


def event_log_context(row: Row[Any]) -> contextlib.AbstractContextManager[None]:
    """What a line about this event is about: the event, its saga, its order."""
    workflow_id = str((row.headers or {}).get("correlation_id") or "")
    return log_context(
        event_id=str(row.event_id),
        workflow_id=workflow_id,
        order_id=order_id_of(workflow_id),
    )


async def publish_chain(
    js: Any, schema: str, chain: list[Row[Any]], config: RelayConfig, deadline: float | None
) -> ChainOutcome:
    outcome = ChainOutcome()
    for row in chain:
        if deadline is not None and time.monotonic() >= deadline:
            # Paused past our lease (the clock jumped): the rest is not ours to send.
            return outcome
        try:
            subject, body, headers = envelope_of(schema, row)
            with TRACER.start_as_current_span(
                f"publish {row.event_type}",
                context=extract_trace(row.headers),
                kind=SpanKind.PRODUCER,
                attributes={"messaging.destination.name": subject, "event_id": str(row.event_id)},
            ):
                inject_trace(headers)
                ack = await js.publish(
                    subject, body, timeout=config.publish_timeout_s, headers=headers
                )
        except EVENT_FAULTS as err:
            outcome.failure = (row, err)
            return outcome
        except Exception as err:  # timeouts, no responders, a reconnecting client
            outcome.broker_error = f"{type(err).__name__}: {err}"
            return outcome
        if getattr(ack, "duplicate", False):
            outcome.duplicates += 1
            with event_log_context(row):
                log.warning("event %s was already in the stream (published twice)", row.event_id)
        outcome.published.append(str(row.event_id))
    return outcome


async def _record_failure(
    conn: AsyncConnection,
    js: Any,
    schema: str,
    row: Row[Any],
    error: BaseException,
    config: RelayConfig,
) -> bool:
    outbox = service_tables[schema].outbox
    attempts = int(row.attempts) + 1
    dead = attempts >= config.max_attempts
    message = f"{type(error).__name__}: {error}"[:1000]
    if dead:
        await dead_letter(js, schema, row, message, config)
        with event_log_context(row):
            log.error(
                "event %s dead-lettered after %d attempts: %s", row.event_id, attempts, message
            )
    # Full jitter: relays retrying together must not hammer the broker in step.
    delay = random.uniform(0, min(config.backoff_cap_s, config.backoff_base_s * 2**attempts))
    await conn.execute(
        update(outbox)
        .where(outbox.c.event_id == row.event_id)
        .values(
            attempts=attempts,
            last_error=message,
            status="FAILED" if dead else "PENDING",
            next_attempt_at=func.now() + timedelta(seconds=delay),
        )
    )
    return dead


async def dead_letter(
    js: Any, schema: str, row: Row[Any], reason: str, config: RelayConfig
) -> None:
    _, body, headers = envelope_of(schema, row)
    headers = {**headers, wire.MSG_ID: f"dl-{row.event_id}", "Dead-Letter-Reason": reason}
    subject = wire.dead_letter_subject_for(_token(row.aggregate_type), _token(row.event_type))
    # The full event first; if the event itself is what cannot be published
    # (too large, say), its envelope without the payload: the row keeps it.
    stripped = json.loads(body)
    stripped["payload"] = {"omitted": "see the outbox row", "bytes": len(body)}
    for data in (body, json.dumps(stripped).encode()):
        try:
            await js.publish(subject, data, timeout=config.publish_timeout_s, headers=headers)
            return
        except Exception as err:  # the row stays FAILED in the outbox: the CLI still lists it
            log.error("could not copy %s to the dead-letter subject: %s", row.event_id, err)


def _token(value: str) -> str:
    """A subject token that cannot itself be the reason the publish failed."""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "_" for c in value)
    return cleaned or "_"
