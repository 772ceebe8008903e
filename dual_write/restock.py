"""The three ways of writing a restock; `crash` runs between the two writes of each."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from types import SimpleNamespace
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.relay_ring import ring_relay
from db.tables import products, service_tables
from db.unit_of_work import insert_events
from relay.publisher import envelope_of

EVENT_TYPE = "StockReceived"
AGGREGATE = "product"
_NAMESPACE = uuid.UUID("6f1e2d4c-7a55-4c1b-9d51-2b8f0c1e7a10")


class Mode(StrEnum):
    COMMIT_THEN_PUBLISH = "commit-then-publish"
    PUBLISH_THEN_COMMIT = "publish-then-commit"
    OUTBOX = "outbox"


def event_id_for(request_id: str) -> str:
    """One restock request, one event id, however often it is tried."""
    return str(uuid.uuid5(_NAMESPACE, f"restock:{request_id}"))


async def restock(
    mode: Mode,
    engine: AsyncEngine,
    js: Any,
    sku: str,
    quantity: int,
    request_id: str,
    crash: Callable[[], None] = lambda: None,
) -> None:
    event = {
        "event_id": event_id_for(request_id),
        "aggregate_type": AGGREGATE,
        "aggregate_id": sku,
        "event_type": EVENT_TYPE,
        "payload": {"sku": sku, "quantity": quantity},
        "headers": {"correlation_id": f"restock-{request_id}"},
    }
    if mode is Mode.COMMIT_THEN_PUBLISH:
        async with engine.begin() as conn:
            await _raise_stock(conn, sku, quantity)
        crash()
        await _publish(js, event)
    elif mode is Mode.PUBLISH_THEN_COMMIT:
        await _publish(js, event)
        crash()
        async with engine.begin() as conn:
            await _raise_stock(conn, sku, quantity)
    else:
        async with engine.begin() as conn:
            await _raise_stock(conn, sku, quantity)
            await insert_events(conn, service_tables["inventory"].outbox, [event])
        ring_relay(engine, "inventory")
        crash()  # the relay publishes it, whenever it runs next


async def _raise_stock(conn: AsyncConnection, sku: str, quantity: int) -> None:
    raised = await conn.execute(
        update(products)
        .where(products.c.sku == sku)
        .values(
            stock=products.c.stock + quantity,
            stock_received=products.c.stock_received + quantity,
        )
    )
    if raised.rowcount != 1:
        raise LookupError(f"no product {sku}")


async def _publish(js: Any, event: dict[str, Any]) -> None:
    # Exactly what the relay would publish for this row: subject, headers, envelope.
    row = SimpleNamespace(**event, created_at=datetime.now(UTC))
    subject, body, headers = envelope_of("inventory", row)
    await js.publish(subject, body, headers=headers)
