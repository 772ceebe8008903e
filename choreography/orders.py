"""The orders service's entry points for a choreographed order: place it, cancel it.

Placing is the saga's first step and nothing more: create_order's local
transaction writes the order and its OrderCreated event, which carries the
order's facts to the services that take it from there.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.orders import OrderActivities
from choreography.handlers import cancel_command, keys
from db.engine import create_session_factory
from db.tables import order_lines, orders
from db.unit_of_work import carried_headers
from domain.activities import CreateOrder, OrderClosed, PricedOrder
from domain.choreography import CARRIED_HEADER, Carried
from domain.order_saga import StepName
from domain.orders import OrderLine, PlaceOrder, SagaMode


async def place(engine: AsyncEngine, order: PlaceOrder, deadline: datetime) -> PricedOrder:
    """Create the order; a repeat (same order id) returns what the first one priced.

    Its token comes sealed (security.sealed, as the API seals every order's).
    """
    carried = Carried(
        order_id=order.order_id,
        customer_id=order.customer_id,
        items=order.items,
        payment_token=order.payment_token,
        deadline=deadline,
    )
    command = CreateOrder(
        **keys(order.order_id, StepName.CREATE_ORDER),
        customer_id=order.customer_id,
        items=order.items,
        request_hash=order.request_hash,
        saga_mode=SagaMode.CHOREOGRAPHY,
        deadline_at=deadline,
    )
    with carried_headers({CARRIED_HEADER: carried.model_dump(mode="json")}):
        return await OrderActivities(create_session_factory(engine)).create_order(command)


async def cancel(engine: AsyncEngine, order_id: str, reason: str) -> OrderClosed | None:
    """Cancel the order if it is still open; its OrderCancelled makes the services undo.

    None when there is no choreographed order with this id.
    """
    carried = await carried_for(engine, order_id)
    if carried is None:
        return None
    with carried_headers({CARRIED_HEADER: carried.model_dump(mode="json")}):
        return await OrderActivities(create_session_factory(engine)).cancel_order(
            cancel_command(order_id, reason)
        )


async def carried_for(engine: AsyncEngine, order_id: str) -> Carried | None:
    """The order's facts as the orders service holds them (no card token: undos need none)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(orders).where(
                    orders.c.order_id == order_id,
                    orders.c.saga_mode == SagaMode.CHOREOGRAPHY.value,
                )
            )
        ).first()
        if row is None:
            return None
        lines = await conn.execute(
            select(order_lines.c.sku, order_lines.c.quantity)
            .where(order_lines.c.order_id == order_id)
            .order_by(order_lines.c.line_no)
        )
        items = [OrderLine(sku=line.sku, quantity=line.quantity) for line in lines]
    return Carried(
        order_id=order_id,
        customer_id=row.customer_id,
        items=items,
        payment_token="",
        deadline=row.deadline_at,
        total=row.total,
        currency=row.currency,
    )
