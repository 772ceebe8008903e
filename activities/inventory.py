"""Inventory service: reserve stock for an order, release it on compensation."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select, update
from temporalio import activity

from activities._common import context, refusal, stable_id
from db.engine import SessionFactory
from db.tables import products, reservations
from db.unit_of_work import Step, apply_once
from domain.activities import Act, ReleaseStock, ReserveStock, StockReleased, StockReserved
from domain.errors import ErrorType

SERVICE = "inventory"
AGGREGATE = "reservation"


class InventoryActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name=Act.RESERVE_STOCK)
    async def reserve_stock(self, cmd: ReserveStock) -> StockReserved:
        wanted = Counter[str]()
        for line in cmd.items:
            wanted[line.sku] += line.quantity

        async def change(step: Step) -> StockReserved:
            # Sorted, so two orders for the same products lock rows in one order
            # and cannot deadlock.
            for sku in sorted(wanted):
                await _take(step, sku, wanted[sku])
            await step.session.execute(
                reservations.insert(),
                [
                    {
                        "reservation_id": stable_id(cmd.idempotency_key, sku),
                        "order_id": cmd.order_id,
                        "sku": sku,
                        "quantity": qty,
                        "status": "RESERVED",
                    }
                    for sku, qty in sorted(wanted.items())
                ],
            )
            payload = {"order_id": cmd.order_id, "lines": dict(sorted(wanted.items()))}
            step.record(AGGREGATE, cmd.order_id, "StockReserved", payload)
            return StockReserved(reservation_id=cmd.order_id, lines=len(wanted))

        return await apply_once(self._sessions, context(SERVICE, cmd), change, StockReserved)

    @activity.defn(name=Act.RELEASE_STOCK)
    async def release_stock(self, cmd: ReleaseStock) -> StockReleased:
        async def change(step: Step) -> StockReleased:
            held = (
                await step.session.execute(
                    select(
                        reservations.c.reservation_id, reservations.c.sku, reservations.c.quantity
                    )
                    .where(
                        reservations.c.order_id == cmd.order_id, reservations.c.status == "RESERVED"
                    )
                    .order_by(reservations.c.sku)
                    .with_for_update()
                )
            ).all()
            for row in held:
                await step.session.execute(
                    update(products)
                    .where(products.c.sku == row.sku)
                    .values(stock=products.c.stock + row.quantity)
                )
            if held:
                await step.session.execute(
                    update(reservations)
                    .where(reservations.c.reservation_id.in_([r.reservation_id for r in held]))
                    .values(status="RELEASED", released_at=func.now())
                )
                lines = {row.sku: row.quantity for row in held}
                step.record(
                    AGGREGATE,
                    cmd.order_id,
                    "StockReleased",
                    {"order_id": cmd.order_id, "lines": lines},
                )
            return StockReleased(released_units=sum(row.quantity for row in held))

        return await apply_once(
            self._sessions, context(SERVICE, cmd), change, StockReleased, fence=cmd.fences
        )


async def _take(step: Step, sku: str, quantity: int) -> None:
    # The conditional update is the guard: under concurrency only as many orders
    # as there are units get a row back. The CHECK constraint is the backstop.
    taken = await step.session.execute(
        update(products)
        .where(products.c.sku == sku, products.c.stock >= quantity)
        .values(stock=products.c.stock - quantity)
        .returning(products.c.stock)
    )
    if taken.first() is not None:
        return
    available = await step.session.scalar(select(products.c.stock).where(products.c.sku == sku))
    if available is None:
        raise refusal(ErrorType.UNKNOWN_PRODUCT, f"unknown sku: {sku}", sku=sku)
    raise refusal(
        ErrorType.OUT_OF_STOCK,
        f"out of stock: {sku} (wanted {quantity}, available {available})",
        sku=sku,
        wanted=quantity,
        available=available,
    )
