"""Consumers against the real NATS JetStream and PostgreSQL.

Each test publishes under an aggregate type of its own (`events.<unique>.>`),
read by a durable consumer of its own, so tests never see each other's
messages in the shared EVENTS stream.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo, PubAck, StorageType
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from consumers.consumer import Consumer, RunnerOptions, redelivery_delay
from consumers.order_history import order_history_consumer, project
from consumers.runner import ConsumerRunner
from db.tables import inbox, order_history
from messaging import wire
from messaging.stream import DUPLICATE_WINDOW_S, MAX_AGE_S, SUBJECTS, ensure_stream, stream_config
from messaging.wire import Envelope
from tests.factories import eventually
from wiring.served import INBOX, OWNERS

pytestmark = pytest.mark.asyncio

# Short delays so redeliveries happen within a test's patience.
FAST = RunnerOptions(fetch_timeout_s=0.5, backoff_base_s=0.3, backoff_cap_s=2.0, max_deliver=4)

Start = Callable[..., Awaitable[ConsumerRunner]]


@pytest.fixture
async def consume(js: JetStreamContext, engine: AsyncEngine) -> AsyncIterator[Start]:
    """Run consumers in the background; on teardown they must stop when asked."""
    stop = asyncio.Event()
    started: list[tuple[str, asyncio.Task[None]]] = []

    async def start(consumer: Consumer, options: RunnerOptions = FAST) -> ConsumerRunner:
        runner = ConsumerRunner(js, engine, consumer, options)
        await runner.bind()
        started.append((consumer.name, asyncio.create_task(runner.run(stop))))
        return runner

    yield start
    stop.set()
    await asyncio.wait_for(asyncio.gather(*(task for _, task in started)), timeout=10)
    for name, _ in started:
        await js.delete_consumer(wire.STREAM, name)


@dataclass
class Topic:
    """A test's own aggregate type, and so its own subjects and consumer filter."""

    aggregate_type: str = field(default_factory=lambda: f"test{uuid.uuid4().hex[:12]}")

    @property
    def filter(self) -> str:
        return f"{wire.SUBJECT_PREFIX}.{self.aggregate_type}.>"

    def consumer_name(self) -> str:
        return f"test-{self.aggregate_type}"

    def envelope(
        self, event_type: str, order_id: str | None, occurred_at: datetime | None = None
    ) -> Envelope:
        # Not an order aggregate: the order is named in the payload, as wallet events do.
        return Envelope(
            event_id=str(uuid.uuid4()),
            source="payments",
            aggregate_type=self.aggregate_type,
            aggregate_id=f"agg-{uuid.uuid4().hex[:8]}",
            event_type=event_type,
            payload={"order_id": order_id} if order_id else {"note": "no order"},
            headers={"correlation_id": f"order-{order_id}"},
            occurred_at=occurred_at or datetime.now(UTC),
        )


async def publish(js: JetStreamContext, envelope: Envelope, msg_id: str | None = None) -> PubAck:
    """Publish as the relay does: body = envelope JSON, Nats-Msg-Id = event id."""
    return await js.publish(
        wire.subject_for(envelope.aggregate_type, envelope.event_type),
        envelope.model_dump_json().encode(),
        headers={
            wire.MSG_ID: msg_id or envelope.event_id,
            wire.EVENT_TYPE: envelope.event_type,
            wire.AGGREGATE_TYPE: envelope.aggregate_type,
            wire.AGGREGATE_ID: envelope.aggregate_id,
        },
    )


def new_order_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Recorder:
    """A handler that projects like the real one and records every call."""

    fail_times: int = 0
    calls: list[tuple[str, float]] = field(default_factory=list)

    async def __call__(self, conn: AsyncConnection, envelope: Envelope) -> None:
        self.calls.append((envelope.event_id, time.monotonic()))
        await project(conn, envelope)
        if len(self.calls) <= self.fail_times:
            # After the write: the rollback must take the projection and the inbox claim.
            raise RuntimeError("handler failure for the test")

    def called_for(self, event_id: str) -> int:
        return sum(1 for e, _ in self.calls if e == event_id)


async def history(engine: AsyncEngine, order_id: str) -> list[Any]:
    async with engine.connect() as conn:
        query = (
            select(order_history)
            .where(order_history.c.order_id == order_id)
            .order_by(order_history.c.occurred_at)
        )
        return list((await conn.execute(query)).all())


async def inbox_ids(engine: AsyncEngine, consumer: str) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(inbox.c.event_id).where(inbox.c.consumer == consumer))
        return {str(r.event_id) for r in rows}


async def projected_count(engine: AsyncEngine, event_id: str) -> int:
    async with engine.connect() as conn:
        value = await conn.scalar(select(func.count()).where(order_history.c.event_id == event_id))
        return int(value or 0)


async def settled(js: JetStreamContext, consumer: str, last_seq: int) -> ConsumerInfo:
    """Wait until the consumer has acked or terminated everything up to `last_seq`."""

    async def info() -> ConsumerInfo:
        found: ConsumerInfo = await js.consumer_info(wire.STREAM, consumer)
        return found

    def done(i: ConsumerInfo) -> bool:
        floor = i.ack_floor.stream_seq if i.ack_floor else 0
        return floor >= last_seq and i.num_ack_pending == 0 and i.num_pending == 0

    return await eventually(info, done)


async def test_ensure_stream_is_idempotent_and_restores_its_configuration(js):
    await asyncio.gather(*(ensure_stream(js) for _ in range(4)))
    await js.update_stream(stream_config().evolve(duplicate_window=30.0))

    await asyncio.gather(ensure_stream(js), ensure_stream(js))

    config = (await js.stream_info(wire.STREAM)).config
    assert config.subjects == SUBJECTS == ["events.>", "deadletter.>"]
    assert config.storage == StorageType.FILE
    assert config.retention == "limits"
    assert config.max_age == MAX_AGE_S == 7 * 24 * 3600
    assert config.duplicate_window == DUPLICATE_WINDOW_S == 120


async def test_each_event_is_projected_once(js, engine, consume):
    topic, order_id = Topic(), new_order_id()
    start = datetime.now(UTC)
    sent = [
        topic.envelope(kind, order_id, start + timedelta(seconds=n))
        for n, kind in enumerate(["CreditDebited", "CreditRefunded", "CreditReleased"])
    ]
    consumer = order_history_consumer(topic.consumer_name(), topic.filter)
    await consume(consumer)

    acks = [await publish(js, envelope) for envelope in sent]

    rows = await eventually(lambda: history(engine, order_id), lambda r: len(r) == 3)
    await settled(js, consumer.name, acks[-1].seq)
    assert [r.event_type for r in rows] == ["CreditDebited", "CreditRefunded", "CreditReleased"]
    first = rows[0]
    assert str(first.event_id) == sent[0].event_id
    assert (first.source, first.aggregate_type) == ("payments", topic.aggregate_type)
    assert first.payload == {"order_id": order_id}
    assert first.occurred_at == sent[0].occurred_at
    assert len(await history(engine, order_id)) == 3
    assert await inbox_ids(engine, consumer.name) == {e.event_id for e in sent}


async def test_a_message_published_twice_with_one_msg_id_is_stored_once(js, engine, consume):
    topic, order_id = Topic(), new_order_id()
    envelope = topic.envelope("CreditDebited", order_id)
    recorder = Recorder()
    consumer = Consumer(topic.consumer_name(), topic.filter, recorder, inbox=INBOX, owners=OWNERS)
    await consume(consumer)

    first = await publish(js, envelope)
    again = await publish(js, envelope)

    assert again.duplicate is True
    assert again.seq == first.seq
    info = await js.stream_info(wire.STREAM, subjects_filter=topic.filter)
    assert info.state.subjects == {wire.subject_for(topic.aggregate_type, "CreditDebited"): 1}
    await settled(js, consumer.name, first.seq)
    assert recorder.called_for(envelope.event_id) == 1


async def test_an_event_delivered_twice_is_applied_once(js, engine, consume):
    topic, order_id = Topic(), new_order_id()
    envelope = topic.envelope("CreditDebited", order_id)
    recorder = Recorder()
    consumer = Consumer(topic.consumer_name(), topic.filter, recorder, inbox=INBOX, owners=OWNERS)
    await consume(consumer)

    # Two messages with one event id: a relay repeat outside the dedupe window.
    await publish(js, envelope, msg_id=f"{envelope.event_id}-a")
    second = await publish(js, envelope, msg_id=f"{envelope.event_id}-b")

    info = await settled(js, consumer.name, second.seq)
    assert info.delivered is not None and info.delivered.stream_seq >= second.seq
    assert recorder.called_for(envelope.event_id) == 1
    assert await projected_count(engine, envelope.event_id) == 1
    assert await inbox_ids(engine, consumer.name) == {envelope.event_id}


async def test_a_failing_handler_is_redelivered_with_backoff_then_applied_once(js, engine, consume):
    topic, order_id = Topic(), new_order_id()
    envelope = topic.envelope("CreditDebited", order_id)
    recorder = Recorder(fail_times=2)
    consumer = Consumer(topic.consumer_name(), topic.filter, recorder, inbox=INBOX, owners=OWNERS)
    await consume(consumer)

    ack = await publish(js, envelope)

    await settled(js, consumer.name, ack.seq)
    times = [t for _, t in recorder.calls]
    assert len(times) == 3
    # Delays grow with the delivery count: base after the first, twice that after the second.
    assert times[1] - times[0] >= FAST.backoff_base_s * 0.9
    assert times[2] - times[1] >= 2 * FAST.backoff_base_s * 0.9
    assert await projected_count(engine, envelope.event_id) == 1
    assert await inbox_ids(engine, consumer.name) == {envelope.event_id}


async def test_a_handler_that_always_fails_is_given_up_after_max_deliver(js, engine, consume):
    topic, order_id = Topic(), new_order_id()
    envelope = topic.envelope("CreditDebited", order_id)
    recorder = Recorder(fail_times=1_000)
    consumer = Consumer(topic.consumer_name(), topic.filter, recorder, inbox=INBOX, owners=OWNERS)
    options = RunnerOptions(fetch_timeout_s=0.5, backoff_base_s=0.05, max_deliver=3)
    await consume(consumer, options)

    ack = await publish(js, envelope)

    await settled(js, consumer.name, ack.seq)
    assert recorder.called_for(envelope.event_id) == 3
    assert await projected_count(engine, envelope.event_id) == 0
    assert await inbox_ids(engine, consumer.name) == set()


async def test_a_poison_message_is_terminated_and_does_not_block_the_next(js, engine, consume):
    topic, order_id = Topic(), new_order_id()
    recorder = Recorder()
    consumer = Consumer(topic.consumer_name(), topic.filter, recorder, inbox=INBOX, owners=OWNERS)
    await consume(consumer)
    garbage = wire.subject_for(topic.aggregate_type, "Garbage")
    not_a_uuid = topic.envelope("CreditDebited", order_id).model_copy(update={"event_id": "x-1"})
    valid = topic.envelope("CreditDebited", order_id)

    await js.publish(garbage, b"not json at all", headers={wire.MSG_ID: str(uuid.uuid4())})
    await js.publish(garbage, b'{"event_id": "missing fields"}')
    await publish(js, not_a_uuid)
    last = await publish(js, valid)

    info = await settled(js, consumer.name, last.seq)
    assert info.num_redelivered == 0
    assert [e for e, _ in recorder.calls] == [valid.event_id]
    assert [str(r.event_id) for r in await history(engine, order_id)] == [valid.event_id]


async def test_an_event_of_no_order_is_recorded_in_the_inbox_only(js, engine, consume):
    topic = Topic()
    envelope = topic.envelope("CreditAdded", order_id=None)
    consumer = order_history_consumer(topic.consumer_name(), topic.filter)
    await consume(consumer)

    ack = await publish(js, envelope)

    await settled(js, consumer.name, ack.seq)
    assert await inbox_ids(engine, consumer.name) == {envelope.event_id}
    assert await projected_count(engine, envelope.event_id) == 0


async def test_a_runner_stops_when_asked(js, engine):
    topic = Topic()
    runner = ConsumerRunner(js, engine, order_history_consumer(topic.consumer_name(), topic.filter))
    await runner.bind()
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await eventually(
        lambda: js.consumer_info(wire.STREAM, topic.consumer_name()),
        lambda info: (info.num_waiting or 0) > 0,
    )

    stop.set()

    await asyncio.wait_for(task, timeout=runner.options.fetch_timeout_s + 5)
    await js.delete_consumer(wire.STREAM, topic.consumer_name())


async def test_redelivery_delay_doubles_per_delivery_up_to_the_cap():
    options = RunnerOptions(backoff_base_s=1.0, backoff_cap_s=10.0)

    delays = [redelivery_delay(n, options) for n in range(1, 7)]

    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
