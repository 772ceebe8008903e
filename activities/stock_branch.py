"""Inventory as an XA participant: the stock of an order taken in a prepared transaction.

The branch writes the same reservation rows as the saga's reserve_stock, so
once committed the saga's release_stock undoes it like any reservation.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity

from activities._common import stable_id
from db.tables import products, reservations, service_tables, xa_branches
from db.unit_of_work import StepContext, event_row, insert_events
from db.xa import XaBranches
from domain.activities import TwoPhaseAct
from domain.errors import ErrorType
from domain.two_phase import BranchAck, BranchCall, Vote, VoteReply
from wiring.services import XA_SCHEMAS

SCHEMA = XA_SCHEMAS["stock"]


class StockParticipant:
    def __init__(self, engine: AsyncEngine, lock_timeout_ms: int = 5000) -> None:
        self._branches = XaBranches(engine, xa_branches[SCHEMA], lock_timeout_ms)

    @activity.defn(name=TwoPhaseAct.PREPARE_STOCK)
    async def prepare_stock(self, call: BranchCall) -> VoteReply:
        order_id = str(call.payload["order_id"])
        lines = {str(sku): int(qty) for sku, qty in dict(call.payload["lines"]).items()}

        async def take(conn: AsyncConnection) -> VoteReply | None:
            for sku in sorted(lines):  # one lock order for everyone: no deadlocks
                refused = await _take(conn, sku, lines[sku])
                if refused is not None:
                    return refused
            await conn.execute(
                reservations.insert(),
                [
                    {
                        "reservation_id": stable_id(call.gid, sku),
                        "order_id": order_id,
                        "sku": sku,
                        "quantity": qty,
                        "status": "RESERVED",
                    }
                    for sku, qty in sorted(lines.items())
                ],
            )
            context = StepContext(service_tables[SCHEMA], call.gid, call.tx_id)
            payload = {"order_id": order_id, "lines": dict(sorted(lines.items()))}
            event = event_row(context, "reservation", order_id, "StockReserved", payload)
            await insert_events(conn, service_tables[SCHEMA].outbox, [event])
            return None

        return await self._branches.prepare(call, take)

    @activity.defn(name=TwoPhaseAct.COMMIT_STOCK)
    async def commit_stock(self, call: BranchCall) -> BranchAck:
        return BranchAck(gid=call.gid, outcome=await self._branches.commit(call))

    @activity.defn(name=TwoPhaseAct.ABORT_STOCK)
    async def abort_stock(self, call: BranchCall) -> BranchAck:
        return BranchAck(gid=call.gid, outcome=await self._branches.abort(call))


async def _take(conn: AsyncConnection, sku: str, quantity: int) -> VoteReply | None:
    taken = await conn.execute(
        update(products)
        .where(products.c.sku == sku, products.c.stock >= quantity)
        .values(stock=products.c.stock - quantity)
        .returning(products.c.stock)
    )
    if taken.first() is not None:
        return None
    available = await conn.scalar(select(products.c.stock).where(products.c.sku == sku))
    if available is None:
        return VoteReply(
            vote=Vote.NO, reason=f"unknown sku: {sku}", refusal=ErrorType.UNKNOWN_PRODUCT
        )
    return VoteReply(
        vote=Vote.NO,
        reason=f"out of stock: {sku} (wanted {quantity}, available {available})",
        refusal=ErrorType.OUT_OF_STOCK,
    )
