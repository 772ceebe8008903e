"""Shipping and inventory, for returns: receive the goods, put them back on the shelf,
and the undo of each.

Restocking counts the units as received again (`stock_received`), so the
audit's conservation of stock (received less reserved is on the shelf) holds
with the order's reservation left as it is: those units were sold, and these
came back. Taking them out again needs them still on the shelf: if they were
sold meanwhile, the undo fails on the stock CHECK and retries, a stuck undo
an operator sees, rather than stock below zero.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from temporalio import activity

from activities._common import context
from db.engine import SessionFactory
from db.tables import products, restocks, return_receipts
from db.unit_of_work import Step, apply_once
from domain.returns import GoodsMoved, GoodsReturn, ReturnAct

SHIPPING, INVENTORY = "shipping", "inventory"


class ReturnShippingActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name=ReturnAct.RECEIVE_RETURN)
    async def receive_return(self, cmd: GoodsReturn) -> GoodsMoved:
        units = sum(line.quantity for line in cmd.lines)

        async def change(step: Step) -> GoodsMoved:
            await step.session.execute(
                return_receipts.insert().values(
                    return_id=cmd.return_id, order_id=cmd.order_id, units=units, status="RECEIVED"
                )
            )
            payload = {"order_id": cmd.order_id, "return_id": cmd.return_id, "units": units}
            step.record("shipment", cmd.order_id, "ReturnReceived", payload)
            return GoodsMoved(units=units)

        return await apply_once(self._sessions, context(SHIPPING, cmd), change, GoodsMoved)

    @activity.defn(name=ReturnAct.REJECT_RETURN_RECEIPT)
    async def reject_return_receipt(self, cmd: GoodsReturn) -> GoodsMoved:
        async def change(step: Step) -> GoodsMoved:
            rejected = (
                await step.session.execute(
                    update(return_receipts)
                    .where(
                        return_receipts.c.return_id == cmd.return_id,
                        return_receipts.c.status == "RECEIVED",
                    )
                    .values(status="REJECTED", rejected_at=func.now())
                    .returning(return_receipts.c.units)
                )
            ).first()
            if rejected is None:
                return GoodsMoved(units=0)
            payload = {"order_id": cmd.order_id, "return_id": cmd.return_id}
            step.record("shipment", cmd.order_id, "ReturnReceiptRejected", payload)
            return GoodsMoved(units=rejected.units)

        return await apply_once(
            self._sessions, context(SHIPPING, cmd), change, GoodsMoved, fence=cmd.fences
        )


class ReturnInventoryActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name=ReturnAct.RESTOCK_RETURN)
    async def restock_return(self, cmd: GoodsReturn) -> GoodsMoved:
        # Sorted: two returns of the same products lock their rows in one order.
        lines = sorted(cmd.lines, key=lambda line: line.sku)

        async def change(step: Step) -> GoodsMoved:
            for line in lines:
                await _shelve(step, line.sku, line.quantity)
            await step.session.execute(
                restocks.insert(),
                [
                    {
                        "return_id": cmd.return_id,
                        "order_id": cmd.order_id,
                        "status": "RESTOCKED",
                        **line.model_dump(),
                    }
                    for line in lines
                ],
            )
            restocked = {line.sku: line.quantity for line in lines}
            payload = {"order_id": cmd.order_id, "return_id": cmd.return_id, "lines": restocked}
            step.record("reservation", cmd.order_id, "StockRestocked", payload)
            return GoodsMoved(units=sum(restocked.values()))

        return await apply_once(self._sessions, context(INVENTORY, cmd), change, GoodsMoved)

    @activity.defn(name=ReturnAct.UNSTOCK_RETURN)
    async def unstock_return(self, cmd: GoodsReturn) -> GoodsMoved:
        async def change(step: Step) -> GoodsMoved:
            shelved = (
                await step.session.execute(
                    select(restocks.c.sku, restocks.c.quantity)
                    .where(restocks.c.return_id == cmd.return_id, restocks.c.status == "RESTOCKED")
                    .order_by(restocks.c.sku)
                    .with_for_update()
                )
            ).all()
            for row in shelved:
                await _shelve(step, row.sku, -row.quantity)
            if not shelved:
                return GoodsMoved(units=0)
            await step.session.execute(
                update(restocks)
                .where(restocks.c.return_id == cmd.return_id)
                .values(status="REVERSED", reversed_at=func.now())
            )
            lines = {row.sku: row.quantity for row in shelved}
            payload = {"order_id": cmd.order_id, "return_id": cmd.return_id, "lines": lines}
            step.record("reservation", cmd.order_id, "RestockReversed", payload)
            return GoodsMoved(units=sum(lines.values()))

        return await apply_once(
            self._sessions, context(INVENTORY, cmd), change, GoodsMoved, fence=cmd.fences
        )


async def _shelve(step: Step, sku: str, units: int) -> None:
    """Put `units` on the shelf (negative: take them off), counted as received."""
    await step.session.execute(
        update(products)
        .where(products.c.sku == sku)
        .values(stock=products.c.stock + units, stock_received=products.c.stock_received + units)
    )
