"""Orders service, for returns: open the return, close it, or cancel it on compensation.

Opening checks the return against the order: CONFIRMED, every line bought,
and no more units than bought less those of earlier returns not cancelled.
The order's row is locked for the check, so two returns of one order take
turns and the second sees the first's lines.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select, update
from temporalio import activity

from activities._common import context, refusal
from db.engine import SessionFactory
from db.tables import order_lines, orders, return_lines, returns
from db.unit_of_work import Step, apply_once
from domain.errors import ErrorType
from domain.orders import OrderStatus
from domain.returns import (
    CloseReturn,
    OpenReturn,
    ReturnAct,
    ReturnClosed,
    ReturnOpened,
    ReturnStatus,
)

SERVICE = "orders"
# The return's events are the order's: they land in its history, in its order.
AGGREGATE = "order"


class ReturnOrderActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name=ReturnAct.OPEN_RETURN)
    async def open_return(self, cmd: OpenReturn) -> ReturnOpened:
        async def change(step: Step) -> ReturnOpened:
            order = (
                await step.session.execute(
                    select(orders.c.status, orders.c.total, orders.c.currency)
                    .where(orders.c.order_id == cmd.order_id)
                    .with_for_update()
                )
            ).first()
            if order is None or order.status != OrderStatus.CONFIRMED:
                status = order.status if order is not None else "absent"
                raise refusal(
                    ErrorType.ORDER_NOT_RETURNABLE,
                    f"order {cmd.order_id} is {status}: only a CONFIRMED order takes returns",
                )
            prices = await _returnable(step, cmd)
            value = sum(prices[line.sku] * line.quantity for line in cmd.lines)
            await step.session.execute(
                returns.insert().values(
                    return_id=cmd.return_id,
                    order_id=cmd.order_id,
                    workflow_id=cmd.correlation_id,
                    status=ReturnStatus.OPEN.value,
                    request_hash=cmd.request_hash,
                    value=value,
                )
            )
            await step.session.execute(
                return_lines.insert(),
                [
                    {
                        "return_id": cmd.return_id,
                        "unit_price": prices[line.sku],
                        **line.model_dump(),
                    }
                    for line in cmd.lines
                ],
            )
            payload = {
                "order_id": cmd.order_id,
                "return_id": cmd.return_id,
                "lines": {line.sku: line.quantity for line in cmd.lines},
                "value": value,
            }
            step.record(AGGREGATE, cmd.order_id, "ReturnOpened", payload)
            return ReturnOpened(value=value, order_total=order.total, currency=order.currency)

        return await apply_once(self._sessions, context(SERVICE, cmd), change, ReturnOpened)

    @activity.defn(name=ReturnAct.CLOSE_RETURN)
    async def close_return(self, cmd: CloseReturn) -> ReturnClosed:
        return await self._end(cmd, ReturnStatus.CLOSED, "ReturnClosed")

    @activity.defn(name=ReturnAct.CANCEL_RETURN)
    async def cancel_return(self, cmd: CloseReturn) -> ReturnClosed:
        return await self._end(cmd, ReturnStatus.CANCELLED, "ReturnCancelled")

    async def _end(self, cmd: CloseReturn, status: ReturnStatus, event: str) -> ReturnClosed:
        async def change(step: Step) -> ReturnClosed:
            ended = await step.session.execute(
                update(returns)
                .where(returns.c.return_id == cmd.return_id, returns.c.status == "OPEN")
                .values(
                    status=status.value,
                    steps=cmd.steps,
                    compensations=cmd.compensations,
                    failure_reason=cmd.failure_reason,
                    card_refunded=cmd.card_refunded,
                    store_credit_refunded=cmd.store_credit_refunded,
                    updated_at=func.now(),
                )
                .returning(returns.c.return_id)
            )
            if ended.first() is None:
                # Never opened (refused, or undone before it committed), or ended.
                current = await step.session.scalar(
                    select(returns.c.status).where(returns.c.return_id == cmd.return_id)
                )
                return ReturnClosed(status=current or "ABSENT", changed=False)
            payload = {
                "order_id": cmd.order_id,
                "return_id": cmd.return_id,
                "card_refunded": cmd.card_refunded,
                "store_credit_refunded": cmd.store_credit_refunded,
                "reason": cmd.failure_reason,
            }
            step.record(AGGREGATE, cmd.order_id, event, payload)
            return ReturnClosed(status=status.value)

        return await apply_once(
            self._sessions, context(SERVICE, cmd), change, ReturnClosed, fence=cmd.fences
        )


async def _returnable(step: Step, cmd: OpenReturn) -> dict[str, int]:
    """Each returned sku's unit price; refused if a line was not bought, or is
    more than is left of it after earlier returns."""
    bought = Counter[str]()
    prices: dict[str, int] = {}
    for row in await step.session.execute(
        select(order_lines.c.sku, order_lines.c.quantity, order_lines.c.unit_price).where(
            order_lines.c.order_id == cmd.order_id
        )
    ):
        bought[row.sku] += row.quantity
        prices[row.sku] = row.unit_price
    returned = await returned_units(step, cmd.order_id)
    for n, line in enumerate(cmd.lines):
        left = bought[line.sku] - returned[line.sku]
        if line.quantity > left:
            raise refusal(
                ErrorType.RETURN_EXCEEDS_ORDER,
                f"lines[{n}]: returning {line.quantity} x {line.sku}, but {left} of the"
                f" {bought[line.sku]} bought are left to return",
                field=f"lines[{n}].quantity",
                sku=line.sku,
                left=left,
            )
    return prices


async def returned_units(step: Step, order_id: str) -> Counter[str]:
    """Units of each sku in the order's returns, less those cancelled."""
    query = (
        select(return_lines.c.sku, func.sum(return_lines.c.quantity))
        .join(returns, returns.c.return_id == return_lines.c.return_id)
        .where(returns.c.order_id == order_id, returns.c.status != ReturnStatus.CANCELLED.value)
        .group_by(return_lines.c.sku)
    )
    return Counter({sku: int(total) for sku, total in await step.session.execute(query)})
