"""The API's read side: plain queries on the services' tables, never a write.

Reads go straight to PostgreSQL because a finished saga's record lives there,
and because listing by status or customer is a database question.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, literal, or_, select, text, tuple_
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncEngine

from api.schemas import OrderEvent, OrderSummary, OrderView, Product, Wallet
from db.tables import (
    decisions,
    order_history,
    order_lines,
    orders,
    products,
    wallets,
)
from db.wallet_store import DEFAULT_CURRENCY
from domain.order_saga import TwoPhaseView
from domain.orders import OrderStatus, PricedLine, SagaMode


@dataclass(frozen=True)
class OrderListing:
    """Which orders to list: filters, and the page (its size, and the key it starts after)."""

    status: OrderStatus | None
    customer_id: str | None
    limit: int
    after: tuple[datetime, str] | None = None


async def list_products(engine: AsyncEngine, after: str | None, limit: int) -> list[Product]:
    """Up to `limit` products by sku, from the one after `after`."""
    query = select(products).order_by(products.c.sku).limit(limit)
    if after is not None:
        query = query.where(products.c.sku > after)
    async with engine.connect() as conn:
        rows = await conn.execute(query)
        return [
            Product(sku=r.sku, name=r.name, price=r.price, currency=r.currency, available=r.stock)
            for r in rows
        ]


# An order, its lines and its 2PC decision in one statement: a client polling a
# running order costs one round trip here, not three.
_LINES = (
    select(
        func.coalesce(
            func.json_agg(
                aggregate_order_by(
                    func.json_build_object(
                        "sku",
                        order_lines.c.sku,
                        "quantity",
                        order_lines.c.quantity,
                        "unit_price",
                        order_lines.c.unit_price,
                        "currency",
                        order_lines.c.currency,
                    ),
                    order_lines.c.line_no,
                )
            ),
            text("'[]'::json"),
        )
    )
    .where(order_lines.c.order_id == orders.c.order_id)
    .scalar_subquery()
)
_ORDER_RECORD = select(
    orders,
    _LINES.label("lines"),
    # An order's 2PC transaction id is its order id; no logged decision, no 2PC.
    decisions.c.tx_id.label("tx_id"),
    decisions.c.decision,
    decisions.c.votes,
    decisions.c.participants,
    decisions.c.completed_at,
).select_from(orders.outerjoin(decisions, decisions.c.tx_id == orders.c.order_id))


async def order_record(engine: AsyncEngine, order_id: str) -> OrderView | None:
    async with engine.connect() as conn:
        query = _ORDER_RECORD.where(orders.c.order_id == order_id)
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    return OrderView(
        order_id=row.order_id,
        customer_id=row.customer_id,
        status=OrderStatus(row.status),
        items=[PricedLine(**line) for line in row.lines],
        total=row.total,
        currency=row.currency,
        steps=list(row.steps),
        compensations=list(row.compensations),
        failure_reason=row.failure_reason,
        two_phase=_two_phase_of(row) if row.tx_id is not None else None,
        mode=SagaMode(row.saga_mode),
        deadline_at=row.deadline_at,
    )


async def two_phase_logged(engine: AsyncEngine, tx_id: str) -> TwoPhaseView | None:
    """A 2PC transaction as its decision log has it; None before a decision."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(decisions).where(decisions.c.tx_id == tx_id))).first()
    return _two_phase_of(row) if row is not None else None


def _two_phase_of(row: Any) -> TwoPhaseView:
    done = row.completed_at is not None
    return TwoPhaseView(
        tx_id=row.tx_id,
        decision=row.decision,
        votes=row.votes,
        # The log knows who acknowledged only once all have.
        phase="done" if done else str(row.decision).lower(),
        acknowledged=list(row.participants) if done else [],
    )


async def order_events(
    engine: AsyncEngine,
    order_id: str,
    after: tuple[datetime, str] | None = None,
    limit: int | None = None,
) -> list[OrderEvent] | None:
    """Up to `limit` projected events of an order (all, without: one order has a dozen),
    oldest first, from the one after `after` (its occurred_at and event_id); None if there
    is no such order.

    The projection lags the services' commits, so an order may exist with no
    events projected yet: that is an empty list, not an unknown order.
    """
    key = (order_history.c.occurred_at, order_history.c.event_id)
    query = select(order_history).where(order_history.c.order_id == order_id)
    if after is not None:
        occurred_at, event_id = after
        cursor = (literal(occurred_at, key[0].type), literal(event_id, key[1].type))
        query = query.where(tuple_(*key) > tuple_(*cursor))
    query = query.order_by(*key).limit(limit)
    async with engine.connect() as conn:
        events = [
            OrderEvent(
                event_id=str(r.event_id),
                event_type=r.event_type,
                aggregate_type=r.aggregate_type,
                source=r.source,
                payload=r.payload,
                occurred_at=r.occurred_at,
            )
            for r in await conn.execute(query)
        ]
        if events:
            return events
        known = await conn.scalar(select(orders.c.order_id).where(orders.c.order_id == order_id))
    return [] if known is not None else None


async def saga_mode_of(engine: AsyncEngine, order_id: str) -> SagaMode | None:
    async with engine.connect() as conn:
        mode = await conn.scalar(select(orders.c.saga_mode).where(orders.c.order_id == order_id))
    return SagaMode(mode) if mode is not None else None


def orders_page(listing: OrderListing) -> Select[Any]:
    """The query of one page of orders, newest first, ties by order id."""
    query = select(orders).order_by(orders.c.created_at.desc(), orders.c.order_id)
    if listing.status is not None:
        query = query.where(orders.c.status == listing.status.value)
    if listing.customer_id is not None:
        query = query.where(orders.c.customer_id == listing.customer_id)
    if listing.after is not None:
        created_at, order_id = listing.after
        # The bound on created_at alone is what an index scan starts from.
        query = query.where(
            orders.c.created_at <= created_at,
            or_(
                orders.c.created_at < created_at,
                and_(orders.c.created_at == created_at, orders.c.order_id > order_id),
            ),
        )
    return query.limit(listing.limit)


async def list_orders(engine: AsyncEngine, listing: OrderListing) -> list[OrderSummary]:
    async with engine.connect() as conn:
        return [
            OrderSummary(
                order_id=r.order_id,
                customer_id=r.customer_id,
                status=OrderStatus(r.status),
                total=r.total,
                currency=r.currency,
                created_at=r.created_at,
                mode=SagaMode(r.saga_mode),
            )
            for r in await conn.execute(orders_page(listing))
        ]


async def wallet(engine: AsyncEngine, customer_id: str) -> Wallet:
    """A customer's store credit; one who never had any holds zero."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(wallets.c.balance, wallets.c.currency, wallets.c.version).where(
                    wallets.c.customer_id == customer_id
                )
            )
        ).first()
    if row is None:
        return Wallet(customer_id=customer_id, balance=0, currency=DEFAULT_CURRENCY)
    return Wallet(
        customer_id=customer_id,
        balance=int(row.balance),
        currency=row.currency,
        version=int(row.version),
    )
