"""The chaos run's verdict once the load has stopped: every saga ended, the audit
clean, the stream whole and in order, and PostgreSQL holding what each client
was told; each asked again while the system catches up (a partition's hung
connections fail on their first use after it)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any, TypeVar

import httpx
import nats
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from temporalio.client import Client

from audit import Scope, Violation, run_audit
from audit.stream_order import stream_violations
from bench.orders import Outcome
from wiring.served import RELAYED

_BY_STATUS = text("SELECT status, count(*) FROM orders.orders GROUP BY status ORDER BY status")
_HELD = text("SELECT order_id, status FROM orders.orders WHERE order_id = ANY(:ids)")
_T = TypeVar("_T")
_OPEN_SAGAS = "WorkflowType IN ('OrderSaga', 'TwoPhaseCommit') AND ExecutionStatus = 'Running'"


async def held_orders(engine: Any, outcomes: list[Outcome]) -> tuple[dict[str, int], list[str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(_BY_STATUS)
        by_status = {str(status): int(n) for status, n in rows}
        return by_status, await told_not_held(conn, outcomes)


async def retrying(ask: Callable[[], Awaitable[_T]], within_s: float) -> _T:
    """The answer, asked again while the connection fails: a connection that hung in a
    partition may fail its first use after it, and that is no verdict on the system."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await asyncio.wait_for(ask(), timeout=60)
        except (DBAPIError, OSError, httpx.TransportError):
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(1.0)


async def told_not_held(conn: Any, outcomes: list[Outcome]) -> list[str]:
    """Each order whose client was told an ending PostgreSQL does not hold."""
    told = {o.order_id: o.status for o in outcomes if o.order_id is not None}
    held = dict((await conn.execute(_HELD, {"ids": list(told)})).all())
    return [
        f"{order_id}: told {status}, held {held.get(order_id, 'no row')}"
        for order_id, status in told.items()
        if held.get(order_id) != status
    ]


async def wait_for_sagas(client: Client, within_s: float) -> int:
    """Open sagas left after `within_s` (0: all ended)."""
    deadline = time.monotonic() + within_s
    while True:
        still_open = (await client.count_workflows(_OPEN_SAGAS)).count
        if still_open == 0 or time.monotonic() > deadline:
            return still_open
        await asyncio.sleep(1.0)


async def stream_audit(
    settings: Any, engine: Any, witnessed: Mapping[str, tuple[str, str, int]]
) -> list[Violation]:
    """Every published event in JetStream, each aggregate's in order, whichever
    NATS node died meanwhile (audit.stream_order); `witnessed` adds the rows pruned
    from the outbox since they were published (chaos.witness)."""
    bus = await nats.connect(settings.nats().servers)
    try:
        return await stream_violations(
            bus.jetstream(), engine, RELAYED.outboxes, witnessed=witnessed
        )
    finally:
        await bus.close()


async def settled_audit(
    engine: Any, provider: Any, client: Client, within_s: float
) -> list[Violation]:
    """The audit with no grace, asked again until clean while the outbox and the read
    model catch up; what it still finds after `within_s` is the verdict."""
    deadline = time.monotonic() + within_s
    while True:
        found = await retrying(
            lambda: run_audit(engine, Scope(grace=timedelta(0)), provider, client), within_s
        )
        if not found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(2.0)
