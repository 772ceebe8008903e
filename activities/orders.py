"""Orders service: create the order, then confirm it or cancel it."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity

from activities._common import context, refusal
from db.catalog import catalog_prices
from db.engine import SessionFactory
from db.tables import order_lines, orders
from db.unit_of_work import Step, apply_once
from domain.activities import Act, CloseOrder, CreateOrder, OrderClosed, PricedOrder
from domain.errors import ErrorType
from domain.orders import OrderStatus, SagaMode, workflow_id_for
from domain.pricing import MixedCurrencies, UnknownProducts, price_order

SERVICE = "orders"
AGGREGATE = "order"


class OrderActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name=Act.CREATE_ORDER)
    async def create_order(self, cmd: CreateOrder) -> PricedOrder:
        async def change(step: Step) -> PricedOrder:
            priced = await _price(step, cmd)
            inserted = await step.session.execute(
                insert(orders)
                .values(
                    order_id=cmd.order_id,
                    customer_id=cmd.customer_id,
                    status=OrderStatus.PENDING.value,
                    total=priced.total,
                    currency=priced.currency,
                    # A choreographed order has no workflow: its correlation id stands in.
                    workflow_id=(
                        workflow_id_for(cmd.order_id)
                        if cmd.saga_mode is SagaMode.ORCHESTRATION
                        else cmd.correlation_id
                    ),
                    request_hash=cmd.request_hash,
                    saga_mode=cmd.saga_mode.value,
                    deadline_at=cmd.deadline_at,
                )
                .on_conflict_do_nothing(index_elements=[orders.c.order_id])
                .returning(orders.c.order_id)
            )
            if inserted.first() is None:
                # Another flow holds this id: one Idempotency-Key sent once per
                # mode, both requests racing. The first to create the row owns it.
                raise refusal(ErrorType.ORDER_EXISTS, f"order {cmd.order_id} already exists")
            await step.session.execute(
                order_lines.insert(),
                [
                    {"order_id": cmd.order_id, "line_no": n, **line.model_dump()}
                    for n, line in enumerate(priced.items, start=1)
                ],
            )
            step.record(AGGREGATE, cmd.order_id, "OrderCreated", priced.model_dump(mode="json"))
            return priced

        return await apply_once(self._sessions, context(SERVICE, cmd), change, PricedOrder)

    @activity.defn(name=Act.CONFIRM_ORDER)
    async def confirm_order(self, cmd: CloseOrder) -> OrderClosed:
        return await self._close(cmd, OrderStatus.CONFIRMED, "OrderConfirmed")

    @activity.defn(name=Act.CANCEL_ORDER)
    async def cancel_order(self, cmd: CloseOrder) -> OrderClosed:
        return await self._close(cmd, OrderStatus.CANCELLED, "OrderCancelled")

    async def _close(self, cmd: CloseOrder, status: OrderStatus, event: str) -> OrderClosed:
        async def change(step: Step) -> OrderClosed:
            closed = await step.session.execute(
                update(orders)
                .where(
                    orders.c.order_id == cmd.order_id,
                    orders.c.status == "PENDING",
                    # Only the flow that created the order closes it (its
                    # workflow id, or a choreographed order's correlation id).
                    orders.c.workflow_id == cmd.correlation_id,
                )
                .values(
                    status=status.value,
                    steps=cmd.steps,
                    compensations=cmd.compensations,
                    failure_reason=cmd.failure_reason,
                    updated_at=func.now(),
                )
                .returning(orders.c.order_id)
            )
            if closed.first() is None:
                # No pending order: create_order never committed, or this order is
                # already closed. Either way there is nothing left to change.
                current = await step.session.scalar(
                    select(orders.c.status).where(orders.c.order_id == cmd.order_id)
                )
                unrecorded = current is None and status is OrderStatus.CANCELLED
                if not (unrecorded and cmd.customer_id):
                    return OrderClosed(
                        order_id=cmd.order_id, status=current or "ABSENT", changed=False
                    )
                # Cancelled before it was created: the client was told CANCELLED,
                # and so says its record once the saga is forgotten. This undo
                # fences create_order, which can therefore never write it after.
                await _record_unpriced(step, cmd)
            payload = {"order_id": cmd.order_id, "reason": cmd.failure_reason}
            step.record(AGGREGATE, cmd.order_id, event, payload)
            return OrderClosed(order_id=cmd.order_id, status=status.value)

        return await apply_once(
            self._sessions, context(SERVICE, cmd), change, OrderClosed, fence=cmd.fences
        )


async def _record_unpriced(step: Step, cmd: CloseOrder) -> None:
    """The record of an order cancelled before it was created: never priced."""
    assert cmd.customer_id is not None
    await step.session.execute(
        orders.insert().values(
            order_id=cmd.order_id,
            customer_id=cmd.customer_id,
            status=OrderStatus.CANCELLED.value,
            total=0,
            currency=None,
            workflow_id=cmd.correlation_id,
            request_hash=cmd.request_hash,
            steps=cmd.steps,
            compensations=cmd.compensations,
            failure_reason=cmd.failure_reason,
        )
    )


async def _price(step: Step, cmd: CreateOrder) -> PricedOrder:
    catalog = await catalog_prices(step.session, (line.sku for line in cmd.items))
    try:
        return price_order(cmd.order_id, cmd.items, catalog)
    except UnknownProducts as err:
        raise refusal(ErrorType.UNKNOWN_PRODUCT, str(err), skus=err.skus) from None
    except MixedCurrencies as err:
        raise refusal(ErrorType.INVALID_ORDER, str(err)) from None
