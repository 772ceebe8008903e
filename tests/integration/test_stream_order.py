"""The stream audit (audit.stream_order): the relay's output passes it; an event
marked published but never in JetStream, or one overtaken by its successor, fails."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from sqlalchemy import delete, select, update

from audit import Violation
from audit.stream_order import stream_violations
from chaos.witness import OVERLAP, Witnessed, witness_once
from db.tables import service_tables
from messaging.wire import MSG_ID, STREAM, subject_for
from tests.factories import eventually
from tests.integration.test_relay import write_events
from wiring.served import RELAYED

OUTBOX = service_tables["orders"].outbox


async def statuses(engine, ids: list[str]) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.scalars(select(OUTBOX.c.status).where(OUTBOX.c.event_id.in_(ids))))


async def test_what_the_relay_published_is_all_in_the_stream_in_order(engine, js, relay):
    aggregates = [str(uuid.uuid4()) for _ in range(3)]
    ids = [i for a in aggregates for i in await write_events(engine, a, ["A", "B", "C", "D"])]
    await eventually(lambda: statuses(engine, ids), lambda s: s == {"PUBLISHED"})

    assert await stream_violations(js, engine, RELAYED.outboxes, aggregates) == []


async def test_a_lost_event_and_an_overtaken_one_are_named(engine, js):
    lost_aggregate, swapped_aggregate = str(uuid.uuid4()), str(uuid.uuid4())
    [lost] = await write_events(engine, lost_aggregate, ["Lost"])
    first, second = await write_events(engine, swapped_aggregate, ["First", "Second"])
    async with engine.begin() as conn:  # as if published: no relay runs in this test
        await conn.execute(
            update(OUTBOX)
            .where(OUTBOX.c.event_id.in_([lost, first, second]))
            .values(status="PUBLISHED", published_at=datetime.now(UTC))
        )
    for event_id in (second, first):  # the successor first
        body = {
            "event_id": event_id, "source": "orders", "aggregate_type": "order",
            "aggregate_id": swapped_aggregate, "event_type": "Swapped", "payload": {},
            "headers": {}, "occurred_at": datetime.now(UTC).isoformat(),
        }  # fmt: skip
        await js.publish(
            subject_for("order", "Swapped"),
            json.dumps(body).encode(),
            stream=STREAM,
            headers={MSG_ID: event_id},
        )

    found = await stream_violations(
        js, engine, RELAYED.outboxes, [lost_aggregate, swapped_aggregate]
    )

    assert sorted((v.check, v.subject) for v in found) == [
        ("event-order", swapped_aggregate),
        ("lost-event", lost_aggregate),
    ]
    [order] = [v for v in found if v.check == "event-order"]
    assert first in order.detail and second in order.detail


async def test_a_message_that_is_no_envelope_is_passed_over(engine, js):
    aggregate = str(uuid.uuid4())
    await js.publish(subject_for("order", "Noise"), b"not an envelope", stream=STREAM)
    await js.publish(subject_for("order", "Noise"), b'{"no": "fields"}', stream=STREAM)

    assert await stream_violations(js, engine, RELAYED.outboxes, [aggregate]) == []


async def test_a_row_pruned_after_the_witness_read_it_is_still_checked(engine, js):
    """The chaos run's short retention prunes published rows before the audit:
    what chaos.witness read of them stands in for the outbox."""
    aggregate = str(uuid.uuid4())
    [lost] = await write_events(engine, aggregate, ["Lost"])
    await mark_published(engine, [lost], datetime.now(UTC))
    seen = Witnessed()
    await witness_once(seen, engine, RELAYED.outboxes)
    # The relay's settle stamps its transaction's start: a row can land after a
    # read with a time before it. The next read's overlap still takes it.
    [late] = await write_events(engine, aggregate, ["Late"])
    assert seen.since is not None
    await mark_published(engine, [late], seen.since - OVERLAP / 2)
    async with engine.begin() as conn:  # pruned, as the relay would after the retention
        await conn.execute(delete(OUTBOX).where(OUTBOX.c.event_id == lost))

    await witness_once(seen, engine, RELAYED.outboxes)

    assert {lost, late} <= set(seen.rows)
    assert await stream_violations(js, engine, RELAYED.outboxes, [aggregate]) == [
        Violation("lost-event", aggregate, f"orders event {late} is PUBLISHED, not in {STREAM}")
    ]
    found = await stream_violations(js, engine, RELAYED.outboxes, [aggregate], seen.rows)
    assert sorted(v.detail.split()[2] for v in found) == sorted([lost, late])


async def mark_published(engine, ids: list[str], at: datetime) -> None:
    async with engine.begin() as conn:  # as if published: no relay runs in this test
        await conn.execute(
            update(OUTBOX)
            .where(OUTBOX.c.event_id.in_(ids))
            .values(status="PUBLISHED", published_at=at)
        )
