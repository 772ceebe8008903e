"""The relay's claim on outbox rows and the after-commit wake-up, on real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from pydantic import BaseModel
from sqlalchemy import select

from db.engine import asyncpg_dsn
from db.relay_ring import OUTBOX_CHANNEL, ring_relay, rung
from db.tables import service_tables
from db.unit_of_work import Step, StepContext, apply_once, event_row, insert_events
from relay import outbox
from tests.factories import eventually
from tests.integration.test_relay import write_events

pytestmark = pytest.mark.asyncio
OUTBOX = service_tables["orders"].outbox


async def _claim(engine, ttl_s: float = 30.0):
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        return await outbox.claim(conn, OUTBOX, 500, None, claim_ttl_s=ttl_s, retrying_only=False)


async def test_a_claimed_aggregate_is_not_claimed_again_until_its_claim_is_settled(engine):
    aggregate = f"claim-{uuid.uuid4()}"
    first, second = await write_events(engine, aggregate, ["Created", "Paid"])
    claimed = [r for r in await _claim(engine) if r.aggregate_id == aggregate]
    assert [str(r.event_id) for r in claimed] == [first, second]
    # In flight: a second pass (another relay) takes nothing of the aggregate.
    assert not [r for r in await _claim(engine) if r.aggregate_id == aggregate]
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        lags = await outbox.settle(conn, OUTBOX, claimed, published=[first])
    assert len(lags) == 1
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(OUTBOX.c.event_id, OUTBOX.c.status, OUTBOX.c.next_attempt_at).where(
                    OUTBOX.c.aggregate_id == aggregate
                )
            )
        ).all()
    settled = {str(e): (status, due) for e, status, due in rows}
    assert settled[first][0] == "PUBLISHED"
    assert settled[second] == ("PENDING", None)  # released: due at once, no retry marker
    again = [r for r in await _claim(engine) if r.aggregate_id == aggregate]
    assert [str(r.event_id) for r in again] == [second]


async def test_an_expired_claim_is_claimed_again_and_the_first_claimer_cannot_settle_it(engine):
    aggregate = f"expiry-{uuid.uuid4()}"
    (event,) = await write_events(engine, aggregate, ["Created"])
    stale = [r for r in await _claim(engine, ttl_s=0.2) if r.aggregate_id == aggregate]
    assert len(stale) == 1
    await asyncio.sleep(0.4)  # the claimer paused past its claim
    fresh = [r for r in await _claim(engine) if r.aggregate_id == aggregate]
    assert [str(r.event_id) for r in fresh] == [event]
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        # The paused claimer releases what it holds no more: nothing changes.
        assert await outbox.settle(conn, OUTBOX, stale, published=[]) == []
        status, due = (
            await conn.execute(
                select(OUTBOX.c.status, OUTBOX.c.next_attempt_at).where(OUTBOX.c.event_id == event)
            )
        ).one()
    assert status == "PENDING"
    assert due == fresh[0].claimed_until  # still the second claim's


async def test_a_ring_after_commit_is_heard_and_coalesces(engine, settings):
    heard: list[str] = []
    listener = await asyncpg.connect(asyncpg_dsn(settings.database_target))
    await listener.add_listener(OUTBOX_CHANNEL, lambda *args: heard.append(args[-1]))
    try:
        for _ in range(20):
            ring_relay(engine, "orders")
        ring_relay(engine, "payments")
        await rung(engine)
        await asyncio.sleep(0.2)  # delivery to the listener's socket
    finally:
        await listener.close()
    assert "orders" in heard and "payments" in heard
    assert len(heard) < 21  # asks behind a ring in flight share the next one


class _Done(BaseModel):
    ok: bool


async def test_a_step_wakes_the_relay_after_its_commit_and_not_from_inside_it(
    engine, sessions, settings
):
    """A NOTIFY inside the step's transaction would serialise its commit behind
    every other notifying commit; the wake-up comes after, from apply_once."""
    heard: list[str] = []
    listener = await asyncpg.connect(asyncpg_dsn(settings.database_target))
    await listener.add_listener(OUTBOX_CHANNEL, lambda *args: heard.append(args[-1]))
    aggregate = f"ring-{uuid.uuid4()}"
    context = StepContext(service_tables["inventory"], f"test:{uuid.uuid4()}", "c")

    async def change(step: Step) -> _Done:
        step.record("stock", aggregate, "Rung", {})
        return _Done(ok=True)

    try:
        async with engine.begin() as conn:  # what a step's transaction writes
            await insert_events(conn, OUTBOX, [event_row(context, "x", aggregate, "Quiet", {})])
        await asyncio.sleep(0.3)
        assert heard == []  # committed, and no wake-up from inside it

        await apply_once(sessions, context, change, _Done)
        await rung(engine)
        await eventually(lambda: _copy(heard), lambda h: h == ["inventory"])

        await apply_once(sessions, context, change, _Done)  # a repeat writes nothing
        await rung(engine)
        await asyncio.sleep(0.3)
        assert heard == ["inventory"]
    finally:
        await listener.close()


async def _copy(items: list[str]) -> list[str]:
    return list(items)
