"""The API's side of a choreographed order: place it, show its progress, cancel it.

No workflow holds a choreographed order's state: the orders table says where
it stands, and the order-history read model says which steps the services
have done and undone (eventually: it trails their commits by the relay's lag).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.exceptions import ApplicationError

from api import queries
from api.schemas import OrderView
from choreography import orders as choreographed_orders
from domain.choreography import progress_of
from domain.errors import ErrorType
from domain.orders import OrderStatus, PlaceOrder


class Refused(Exception):
    """create_order refused the order (its lines are priced in two currencies)."""


async def place(engine: AsyncEngine, timeout_s: float, order: PlaceOrder) -> None:
    """Create the order, to be cancelled unless confirmed within `timeout_s`; if its id
    is taken, the caller's fingerprint check answers."""
    deadline = datetime.now(UTC) + timedelta(seconds=timeout_s)
    try:
        await choreographed_orders.place(engine, order, deadline)
    except ApplicationError as err:
        if err.type == ErrorType.ORDER_EXISTS:
            return
        if not err.non_retryable:
            raise
        raise Refused(err.message) from err


async def view(engine: AsyncEngine, record: OrderView) -> OrderView:
    """The record with the steps the read model has seen done and undone."""
    events = await queries.order_events(engine, record.order_id) or []
    progress = progress_of(event.event_type for event in events)
    return record.model_copy(
        update={
            "steps": progress.steps,
            "compensations": progress.compensations,
            "current_step": (
                progress.waiting_for if record.status == OrderStatus.PENDING else None
            ),
        }
    )
