"""The relay passes' own connection (relay.pass_connection), on real PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select, text

from db.tables import service_tables
from relay import outbox
from relay.pass_connection import PassConnection
from tests.integration.test_relay import write_events

pytestmark = pytest.mark.asyncio
OUTBOX = service_tables["orders"].outbox


async def _claim(conn: outbox.PassConn) -> list[Any]:
    return await outbox.claim(conn, OUTBOX, 500, None, claim_ttl_s=30.0, retrying_only=False)


async def test_a_claim_on_the_pass_connection_reads_as_through_sqlalchemy(engine):
    aggregate = f"pass-{uuid.uuid4()}"
    ids = await write_events(engine, aggregate, ["Created", "Paid"], note="é")
    passes = PassConnection(engine)
    try:
        claimed = [r for r in await _claim(passes) if r.aggregate_id == aggregate]
        lags = await outbox.settle(passes, OUTBOX, claimed, published=[ids[0]])
    finally:
        await passes.close()
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                select(OUTBOX).where(OUTBOX.c.aggregate_id == aggregate).order_by(OUTBOX.c.seq)
            )
        ).all()
    assert [r.event_id for r in claimed] == ids  # str, as the column's type says
    for got, row in zip(claimed, stored, strict=True):
        assert got.payload == row.payload == {"order_id": aggregate, "note": "é"}
        assert got.headers == row.headers and isinstance(got.headers, dict)
        assert got.created_at == row.created_at and got.created_at.tzinfo is not None
    assert [r.pending_before for r in claimed] == [0, 1]
    assert len(lags) == 1 and lags[0] >= 0
    assert [r.status for r in stored] == ["PUBLISHED", "PENDING"]


async def test_a_pass_connection_the_server_killed_fails_once_then_reconnects(engine):
    aggregate = f"pass-kill-{uuid.uuid4()}"
    passes = PassConnection(engine)
    try:
        await _claim(passes)  # checked out and in use
        pid = passes._driver.get_server_pid()
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await conn.commit()
        with pytest.raises(Exception):  # noqa: B017 - whatever asyncpg says of a dead link
            await _claim(passes)
        (event,) = await write_events(engine, aggregate, ["Created"])
        claimed = [r for r in await _claim(passes) if r.aggregate_id == aggregate]
        assert [r.event_id for r in claimed] == [event]
        assert passes._driver.get_server_pid() != pid
    finally:
        await passes.close()
