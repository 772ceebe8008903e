"""What JetStream holds, against what the outboxes say was published.

Read once from the stream's first message to its last: every event the
outboxes mark PUBLISHED is in the stream (none lost, whichever node died),
and each aggregate's events of one outbox stand in the stream in the order
they were written (outbox `seq`), duplicates aside (at least once: a
republished event after the duplicate window stands twice; consumers dedupe
it). The chaos run asks this after the faults, with the read-model check.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.checks import Violation
from messaging.wire import MSG_ID, STREAM, SUBJECT_PREFIX

_BATCH = 500


async def stream_events(
    js: JetStreamContext, aggregate_ids: Collection[str] | None = None
) -> list[tuple[str, str, str]]:
    """(source, aggregate id, event id) of every event message, in stream order."""
    sub = await js.pull_subscribe(
        f"{SUBJECT_PREFIX}.>",
        durable=None,
        stream=STREAM,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE),
    )
    found: list[tuple[str, str, str]] = []
    try:
        while True:
            try:
                batch = await sub.fetch(_BATCH, timeout=2)
            except NatsTimeout:
                batch = []
            for msg in batch:
                try:
                    body = json.loads(msg.data)
                    source, aggregate, event_id = (
                        body["source"],
                        body["aggregate_id"],
                        body["event_id"],
                    )
                except (ValueError, KeyError, TypeError):
                    continue  # no envelope: not one of the outboxes' events
                if aggregate_ids is None or aggregate in aggregate_ids:
                    found.append((source, aggregate, (msg.headers or {}).get(MSG_ID, event_id)))
            if not batch and (await sub.consumer_info()).num_pending == 0:
                return found
    finally:
        await sub.unsubscribe()


async def stream_violations(
    js: JetStreamContext,
    engine: AsyncEngine,
    outboxes: Sequence[Table],
    aggregate_ids: Collection[str] | None = None,
    witnessed: Mapping[str, tuple[str, str, int]] | None = None,
) -> list[Violation]:
    """Published events missing from the stream, and aggregates whose events stand
    in the stream out of their outbox's order; `aggregate_ids` narrows both.

    `witnessed` (as published_events gives them) are rows read while they were
    PUBLISHED and pruned since: checked as if the outbox still held them."""
    in_stream = await stream_events(js, aggregate_ids)
    published = {
        event_id: row
        for event_id, row in (witnessed or {}).items()
        if aggregate_ids is None or row[1] in aggregate_ids
    }
    published.update(await published_events(engine, outboxes, aggregate_ids))
    seen = {event_id for _, _, event_id in in_stream}
    violations = [
        Violation(
            "lost-event", aggregate, f"{source} event {event_id} is PUBLISHED, not in {STREAM}"
        )
        for event_id, (source, aggregate, _) in published.items()
        if event_id not in seen
    ]
    last: dict[tuple[str, str], tuple[int, str]] = {}
    counted: set[str] = set()
    for source, aggregate, event_id in in_stream:
        row = published.get(event_id)
        if row is None or event_id in counted:
            continue  # pruned from the outbox, or a duplicate
        counted.add(event_id)
        before = last.get((source, aggregate))
        if before is not None and row[2] < before[0]:
            violations.append(
                Violation(
                    "event-order",
                    aggregate,
                    f"{source} event {event_id} (seq {row[2]}) stands after {before[1]} "
                    f"(seq {before[0]}) in {STREAM}",
                )
            )
        last[(source, aggregate)] = (row[2], event_id)
    return violations


async def published_events(
    engine: AsyncEngine,
    outboxes: Sequence[Table],
    aggregate_ids: Collection[str] | None = None,
    since: datetime | None = None,
) -> dict[str, tuple[str, str, int]]:
    """Event id → (source, aggregate id, seq) of every PUBLISHED outbox row (of
    `aggregate_ids`, published after `since`, when given)."""
    rows: dict[str, tuple[str, str, int]] = {}
    async with engine.connect() as conn:
        for outbox in outboxes:
            query: Any = select(outbox.c.event_id, outbox.c.aggregate_id, outbox.c.seq).where(
                outbox.c.status == "PUBLISHED"
            )
            if aggregate_ids is not None:
                query = query.where(outbox.c.aggregate_id.in_(list(aggregate_ids)))
            if since is not None:
                query = query.where(outbox.c.published_at > since)
            for event_id, aggregate, seq in await conn.execute(query):
                rows[str(event_id)] = (str(outbox.schema), str(aggregate), int(seq))
    return rows
