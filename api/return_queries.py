"""The API's reads for returns: an order's returns, one return, and what is left to return."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from api.schemas import ReturnLineView, ReturnView
from db.tables import order_lines, orders, return_lines, returns


@dataclass(frozen=True)
class Returnable:
    """An order as a return sees it: its status, units bought and units returned, by sku."""

    status: str
    customer_id: str
    bought: Counter[str] = field(default_factory=Counter)
    returned: Counter[str] = field(default_factory=Counter)

    def left(self, sku: str) -> int:
        return self.bought[sku] - self.returned[sku]


async def returnable(engine: AsyncEngine, order_id: str) -> Returnable | None:
    """None: no such order. The saga's open_return checks again, under a lock."""
    async with engine.connect() as conn:
        order = (
            await conn.execute(
                select(orders.c.status, orders.c.customer_id).where(orders.c.order_id == order_id)
            )
        ).first()
        if order is None:
            return None
        bought = select(order_lines.c.sku, order_lines.c.quantity).where(
            order_lines.c.order_id == order_id
        )
        returned = (
            select(return_lines.c.sku, func.sum(return_lines.c.quantity))
            .join(returns, returns.c.return_id == return_lines.c.return_id)
            .where(returns.c.order_id == order_id, returns.c.status != "CANCELLED")
            .group_by(return_lines.c.sku)
        )
        found = Returnable(status=str(order.status), customer_id=str(order.customer_id))
        for sku, quantity in await conn.execute(bought):
            found.bought[sku] += int(quantity)
        for sku, quantity in await conn.execute(returned):
            found.returned[sku] += int(quantity)
    return found


_LINES = (
    select(
        func.coalesce(
            func.json_agg(
                func.json_build_object(
                    "sku",
                    return_lines.c.sku,
                    "quantity",
                    return_lines.c.quantity,
                    "unit_price",
                    return_lines.c.unit_price,
                )
            ),
            func.json_build_array(),
        )
    )
    .where(return_lines.c.return_id == returns.c.return_id)
    .scalar_subquery()
)
_RETURN = select(returns, _LINES.label("lines"))


async def returns_of(engine: AsyncEngine, order_id: str) -> list[ReturnView]:
    query = _RETURN.where(returns.c.order_id == order_id).order_by(
        returns.c.created_at, returns.c.return_id
    )
    async with engine.connect() as conn:
        return [_view(row) for row in await conn.execute(query)]


async def return_record(engine: AsyncEngine, order_id: str, return_id: str) -> ReturnView | None:
    query = _RETURN.where(returns.c.return_id == return_id, returns.c.order_id == order_id)
    async with engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return _view(row) if row is not None else None


async def return_fingerprint(engine: AsyncEngine, return_id: str) -> tuple[str, str] | None:
    """The request hash and status a return records; None before open_return commits."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(returns.c.request_hash, returns.c.status).where(
                    returns.c.return_id == return_id
                )
            )
        ).first()
    return (str(row.request_hash), str(row.status)) if row is not None else None


def _view(row: Any) -> ReturnView:
    return ReturnView(
        return_id=row.return_id,
        order_id=row.order_id,
        status=row.status,
        lines=sorted((ReturnLineView(**line) for line in row.lines), key=lambda line: line.sku),
        value=row.value,
        card_refunded=row.card_refunded,
        store_credit_refunded=row.store_credit_refunded,
        failure_reason=row.failure_reason,
        created_at=row.created_at,
    )
