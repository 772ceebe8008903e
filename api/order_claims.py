"""Claiming an order id for the request that places it, by its fingerprint.

An `Idempotency-Key` claims the order id (`orders.order_requests`) before any
saga starts, so a retried or concurrent request finds the first one's
fingerprint instead of starting a second one (api.placing). Unlike the read
side (api.queries), these write: a claim, its settling, its release.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from db.tables import order_requests, orders
from domain.orders import SagaMode

# One statement claims the id and reads the order's record: one round trip,
# not two; as text, so nothing is built or compiled again for each order.
_CLAIM_AND_RECORD = text(
    f"""
    WITH claim AS (
        INSERT INTO {order_requests.fullname} (order_id, request_hash, saga_mode)
        VALUES (:order_id, :request_hash, :saga_mode)
        ON CONFLICT (order_id) DO NOTHING
        RETURNING request_hash
    )
    SELECT (SELECT request_hash FROM claim),
           (SELECT request_hash FROM {orders.fullname} WHERE order_id = :order_id)
    """
)


@dataclass(frozen=True)
class Claim:
    """Who holds an order id: the fingerprint of the request that claimed it."""

    holder: str
    # Only when this request claimed the id: the fingerprint the order's row
    # records, if it has one (an order placed before claims existed), read in
    # the claiming statement. None when there is no row, or when not claimed now.
    recorded: str | None = None
    claimed: bool = False


async def claim_order_id(
    engine: AsyncEngine, order_id: str, request_hash: str, mode: SagaMode
) -> Claim:
    """Claim `order_id` for this request; and who holds it.

    A request racing with ours for the id waits on our insert (or we on
    theirs) and then reads the claim that won. A claim given back between
    the two statements is claimed again.
    """
    params = {"order_id": order_id, "request_hash": request_hash, "saga_mode": mode.value}
    holder_of = select(order_requests.c.request_hash).where(order_requests.c.order_id == order_id)
    # Each statement its own transaction (as in a READ COMMITTED one, each has
    # its own snapshot): no BEGIN and COMMIT round trips around them.
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    while True:
        async with autocommit.connect() as conn:
            claimed, record = (await conn.execute(_CLAIM_AND_RECORD, params)).one()
            if claimed is not None:
                return Claim(holder=claimed, recorded=record, claimed=True)
            # Another request's claim: committed by now (the insert waited for
            # it), so visible to this next statement's snapshot.
            holder: str | None = await conn.scalar(holder_of)
        if holder is not None:
            return Claim(holder=holder)


async def settle_claim(engine: AsyncEngine, order_id: str, ours: str, recorded: str) -> None:
    """The order was there before our claim (placed before claims, or started
    without the API): its claim is the request it records, not ours."""
    async with engine.begin() as conn:
        await conn.execute(
            update(order_requests)
            .where(order_requests.c.order_id == order_id, order_requests.c.request_hash == ours)
            .values(request_hash=recorded)
        )


async def release_claim(engine: AsyncEngine, order_id: str, request_hash: str) -> None:
    """Give the id back: this request was refused before anything was written for it."""
    async with engine.begin() as conn:
        await conn.execute(
            delete(order_requests).where(
                order_requests.c.order_id == order_id,
                order_requests.c.request_hash == request_hash,
            )
        )


async def request_fingerprint(engine: AsyncEngine, order_id: str) -> str | None:
    async with engine.connect() as conn:
        return await conn.scalar(select(orders.c.request_hash).where(orders.c.order_id == order_id))
