"""Test data with unique ids, and readers of what the system wrote."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.tables import (
    card_holds,
    decisions,
    payments,
    products,
    reservations,
    service_tables,
    shipments,
    wallets,
)
from db.wallet_store import WalletStore
from wiring.services import SERVICES

T = TypeVar("T")


def customer() -> str:
    return f"cust-{uuid.uuid4().hex[:10]}"


async def insert_product(engine: AsyncEngine, stock: int, price: int) -> str:
    sku = f"T-{uuid.uuid4().hex[:10].upper()}"
    async with engine.begin() as conn:
        await conn.execute(
            products.insert().values(
                sku=sku, name=f"test product {sku}", price=price, currency="EUR", stock=stock
            )
        )
    return sku


async def stock_of(engine: AsyncEngine, sku: str) -> int:
    async with engine.connect() as conn:
        value = await conn.scalar(select(products.c.stock).where(products.c.sku == sku))
    assert value is not None
    return int(value)


async def rows(engine: AsyncEngine, table: Any, order_id: str) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(table).where(table.c.order_id == order_id))).all())


async def payments_of(engine: AsyncEngine, order_id: str) -> list[Any]:
    return await rows(engine, payments, order_id)


async def shipments_of(engine: AsyncEngine, order_id: str) -> list[Any]:
    return await rows(engine, shipments, order_id)


async def reservations_of(engine: AsyncEngine, order_id: str) -> list[Any]:
    return await rows(engine, reservations, order_id)


async def events_of(engine: AsyncEngine, order_id: str) -> list[str]:
    """Every outbox event about one order, across all services, in commit order."""
    found: list[tuple[Any, int, str]] = []
    async with engine.connect() as conn:
        for service in SERVICES:
            outbox = service_tables[service].outbox
            result = await conn.execute(
                select(outbox.c.created_at, outbox.c.seq, outbox.c.event_type).where(
                    outbox.c.aggregate_id == order_id
                )
            )
            found.extend((r.created_at, r.seq, r.event_type) for r in result)
    return [event for _, _, event in sorted(found)]


async def count(engine: AsyncEngine, sql: str, **params: Any) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text(sql), params) or 0)


async def eventually(
    probe: Callable[[], Awaitable[T]], until: Callable[[T], bool], deadline_s: float = 20.0
) -> T:
    """Poll `probe` until `until(value)` holds; fail with the last value at the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = await probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {deadline_s}s; last value: {value!r}")
        await asyncio.sleep(0.05)


async def insert_wallet(engine: AsyncEngine, balance: int, customer_id: str | None = None) -> str:
    customer_id = customer_id or customer()
    async with engine.begin() as conn:
        await WalletStore().open_with(conn, customer_id, balance)  # as a first top-up does
    return customer_id


async def balance_of(engine: AsyncEngine, customer_id: str) -> int:
    async with engine.connect() as conn:
        value = await conn.scalar(
            select(wallets.c.balance).where(wallets.c.customer_id == customer_id)
        )
    assert value is not None
    return int(value)


async def prepared_branches(engine: AsyncEngine, tx_id: str) -> list[str]:
    """Our prepared transactions still open for one 2PC transaction."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT gid FROM pg_prepared_xacts WHERE gid LIKE :p"), {"p": f"tpc:{tx_id}:%"}
        )
        return sorted(r.gid for r in rows)


async def decision_of(engine: AsyncEngine, tx_id: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(decisions).where(decisions.c.tx_id == tx_id))).first()


async def hold_of(engine: AsyncEngine, tx_id: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(card_holds).where(card_holds.c.tx_id == tx_id))).first()


@asynccontextmanager
async def wallet_locked(engine: AsyncEngine, customer_id: str) -> AsyncIterator[AsyncConnection]:
    """Hold a wallet's row in an open transaction: its store-credit prepare must wait.

    The caller may roll the holder back early; otherwise it is rolled back on exit.
    """
    async with engine.connect() as holder:
        await holder.begin()
        await holder.execute(
            text("SELECT 1 FROM payments.wallets WHERE customer_id = :c FOR UPDATE"),
            {"c": customer_id},
        )
        yield holder


async def lock_waits(engine: AsyncEngine, at_least: int) -> None:
    """Wait until `at_least` sessions are blocked on a lock: a task reached its wait."""

    async def waiting() -> int:
        async with engine.connect() as conn:
            # This database's waits only: the session's cluster serves nothing else.
            waits = text(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE NOT l.granted AND a.datname = current_database()"
            )
            return int(await conn.scalar(waits) or 0)

    await eventually(waiting, lambda n: n >= at_least)


async def check_confirmed_effects(engine: AsyncEngine, order_id: str, amount: int) -> None:
    """A confirmed card order's effects, whichever flow ran it: one captured
    payment of `amount`, one shipment, and the order's five events in order."""
    payments, shipments = await payments_of(engine, order_id), await shipments_of(engine, order_id)
    assert [(p.status, p.amount) for p in payments] == [("CAPTURED", amount)], payments
    assert [s.status for s in shipments] == ["CREATED"], shipments
    events = await events_of(engine, order_id)
    assert events == [
        "OrderCreated",
        "StockReserved",
        "PaymentCaptured",
        "ShipmentCreated",
        "OrderConfirmed",
    ], events
