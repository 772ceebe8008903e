"""The unit of work's promises, each asserted as behaviour rather than left to a
constraint that happens to fire: a repeated key answers from storage, a refusal
is typed, writers of one aggregate commit in the order they were numbered, and
all of it for whatever schema's tables the step is handed."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pydantic import BaseModel
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.schema import CreateSchema
from temporalio.exceptions import ApplicationError

from activities.inventory import InventoryActivities
from db import kit_tables
from db.tables import service_tables
from db.unit_of_work import Step, StepContext, apply_once, event_row, insert_events
from domain.activities import ReserveStock
from domain.orders import OrderLine
from tests import factories
from tests.factories import eventually
from tests.integration.test_relay import messages_for, statuses

pytestmark = pytest.mark.asyncio


class Counted(BaseModel):
    value: int


async def test_a_repeated_key_answers_the_stored_result_and_changes_nothing(sessions, engine):
    context = StepContext(service_tables["orders"], f"test:{uuid.uuid4()}", "c")
    ran: list[int] = []
    aggregate = str(uuid.uuid4())

    def change_giving(value: int):
        async def change(step: Step) -> Counted:
            ran.append(value)
            # Its own event type: no event id is shared, so no primary key stands
            # in for the check of the key.
            step.record("order", aggregate, f"Counted{value}", {"value": value})
            return Counted(value=value)

        return change

    first = await apply_once(sessions, context, change_giving(1), Counted)
    repeat = await apply_once(sessions, context, change_giving(2), Counted)

    assert (first, repeat) == (Counted(value=1), Counted(value=1))
    assert ran == [1]
    outbox = service_tables["orders"].outbox
    async with engine.connect() as conn:
        payloads = (
            await conn.scalars(select(outbox.c.payload).where(outbox.c.aggregate_id == aggregate))
        ).all()
    assert payloads == [{"value": 1}]


async def test_reserving_more_than_the_stock_is_refused_as_out_of_stock_and_leaves_nothing(
    sessions, engine, product
):
    sku = await product(stock=2)
    order_id = str(uuid.uuid4())
    key = f"order-{order_id}:reserve_stock"
    command = ReserveStock(
        idempotency_key=key,
        order_id=order_id,
        correlation_id=f"order-{order_id}",
        items=[OrderLine(sku=sku, quantity=3)],
    )

    with pytest.raises(ApplicationError) as refused:
        await InventoryActivities(sessions).reserve_stock(command)

    assert (refused.value.type, refused.value.non_retryable) == ("OutOfStock", True)
    assert refused.value.details == ({"sku": sku, "wanted": 3, "available": 2},)
    assert await factories.stock_of(engine, sku) == 2
    assert await factories.reservations_of(engine, order_id) == []
    assert await factories.events_of(engine, order_id) == []
    # Nothing of the refused step remains, its key included: a retry may succeed.
    keys = "SELECT count(*) FROM inventory.idempotency_keys WHERE key = :k"
    assert await factories.count(engine, keys, k=key) == 0


async def waits_on_a_lock(engine, pid: int) -> bool:
    waiting = await factories.count(
        engine, "SELECT count(*) FROM pg_locks WHERE pid = :pid AND NOT granted", pid=pid
    )
    return waiting > 0


async def test_a_later_event_of_an_aggregate_waits_for_the_earlier_ones_commit(engine, js, relay):
    aggregate = str(uuid.uuid4())
    first, second = (
        event_row(
            StepContext(service_tables["orders"], f"test:{uuid.uuid4()}", "c"),
            "order",
            aggregate,
            kind,
            {},
        )
        for kind in ("First", "Second")
    )

    writer: dict[str, int] = {}

    async def write_second() -> None:
        async with engine.begin() as conn:
            writer["pid"] = int(await conn.scalar(select(func.pg_backend_pid())) or 0)
            await insert_events(conn, service_tables["orders"].outbox, [second])

    async with engine.connect() as holder:
        await holder.begin()
        await insert_events(
            holder, service_tables["orders"].outbox, [first]
        )  # numbered first, not yet committed
        writing = asyncio.create_task(write_second())

        # Either the second writer waits for the first's commit (the aggregate's
        # lock), or it committed past it and the relay published it.
        async def overtaken_or_waiting() -> bool:
            if "pid" in writer and await waits_on_a_lock(engine, writer["pid"]):
                return True
            return writing.done() and await statuses(engine, [second["event_id"]]) == ["PUBLISHED"]

        await eventually(overtaken_or_waiting, bool)
        await holder.commit()
    await writing

    messages = await messages_for(js, aggregate, 2)
    assert [m.subject for m in messages] == ["events.order.First", "events.order.Second"]


async def test_a_step_applies_once_in_a_schema_the_application_never_named(engine, sessions):
    schema = f"kit_{uuid.uuid4().hex[:8]}"
    metadata = MetaData()
    tables = kit_tables.service_tables(metadata, schema, partitions=4)
    tallies = Table(
        "tallies",
        metadata,
        Column("name", String(20), primary_key=True),
        Column("count", Integer, nullable=False),
        schema=schema,
    )
    async with engine.begin() as conn:
        await conn.execute(CreateSchema(schema))
        await conn.run_sync(metadata.create_all)
    context = StepContext(tables, f"test:{uuid.uuid4()}", "c")

    async def tally(step: Step) -> Counted:
        await step.session.execute(
            insert(tallies)
            .values(name="visits", count=1)
            .on_conflict_do_update(
                index_elements=[tallies.c.name], set_={"count": tallies.c.count + 1}
            )
        )
        step.record("tally", "visits", "Tallied", {"by": 1})
        return Counted(value=1)

    try:
        first = await apply_once(sessions, context, tally, Counted)
        repeat = await apply_once(sessions, context, tally, Counted)
        async with engine.connect() as conn:
            count = await conn.scalar(select(tallies.c.count))
            events = (await conn.execute(select(tables.outbox))).all()
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))

    assert (first, repeat) == (Counted(value=1), Counted(value=1))
    assert count == 1
    assert [(e.aggregate_id, e.event_type, e.status) for e in events] == [
        ("visits", "Tallied", "PENDING")
    ]
    assert events[0].partition in range(4)
