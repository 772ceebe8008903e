"""Orders: place, read, list and cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Response, status
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from api import queries, sagas
from api.deps import EngineDep, SettingsDep, TemporalDep
from api.problems import Problem
from api.schemas import (
    CancelAcceptedResponse,
    CancelOrderRequest,
    OrderAccepted,
    OrderSummary,
    OrderView,
    PlaceOrderRequest,
)
from domain.orders import OrderStatus, PlaceOrder

router = APIRouter(prefix="/orders", tags=["orders"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Repeat a POST safely: the same key and body return the same order.",
    ),
]
MAX_ORDER_ID = 64


def _not_found(order_id: str) -> Problem:
    return Problem(404, "Order not found", f"no order {order_id}", code="order-not-found")


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OrderAccepted,
    summary="Place an order: starts its saga",
    responses={200: {"model": OrderAccepted, "description": "Replayed Idempotency-Key"}},
)
async def place_order(
    body: PlaceOrderRequest,
    response: Response,
    client: TemporalDep,
    engine: EngineDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> OrderAccepted:
    skus = [line.sku for line in body.items]
    known = await queries.known_skus(engine, skus)
    unknown = [f"items[{n}].sku" for n, sku in enumerate(skus) if sku not in known]
    if unknown:
        raise Problem(
            422,
            "Unknown product",
            f"no product with that sku: {', '.join(unknown)}",
            code="unknown-product",
            errors=[{"field": field, "message": "unknown sku"} for field in unknown],
        )
    order = PlaceOrder(
        order_id=sagas.order_id_for_key(idempotency_key),
        customer_id=body.customer_id,
        items=body.items,
        payment_token=body.payment_token,
        request_hash=body.fingerprint(),
    )
    response.headers["Location"] = f"/orders/{order.order_id}"
    existing = await _existing_fingerprint(client, engine, settings.task_queue, order)
    if existing is None:
        return OrderAccepted(order_id=order.order_id, status=OrderStatus.PENDING)
    if existing != order.request_hash:
        raise Problem(
            409,
            "Idempotency-Key reused",
            "this Idempotency-Key was used with a different request body",
            code="idempotency-key-reused",
        )
    response.status_code = status.HTTP_200_OK
    record = await queries.order_record(engine, order.order_id)
    return OrderAccepted(
        order_id=order.order_id, status=record.status if record else OrderStatus.PENDING
    )


async def _existing_fingerprint(
    client: Client, engine: AsyncEngine, task_queue: str, order: PlaceOrder
) -> str | None:
    # The database outlives Temporal's retention of closed workflows; ask it first.
    recorded = await queries.request_fingerprint(engine, order.order_id)
    if recorded is not None:
        return recorded
    return await sagas.start_saga(client, task_queue, order)


@router.get("", response_model=list[OrderSummary], summary="List orders, newest first")
async def list_orders(
    engine: EngineDep,
    status: OrderStatus | None = None,
    customer_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[OrderSummary]:
    return await queries.list_orders(engine, status, customer_id, limit)


@router.get("/{order_id}", response_model=OrderView, summary="An order and its saga's progress")
async def get_order(order_id: str, client: TemporalDep, engine: EngineDep) -> OrderView:
    if len(order_id) > MAX_ORDER_ID:
        raise _not_found(order_id)
    record = await queries.order_record(engine, order_id)
    if record is not None and record.status != OrderStatus.PENDING:
        return record
    live = await sagas.live_state(client, order_id)
    if live is None:
        if record is None:
            raise _not_found(order_id)
        return record
    return OrderView(**live.model_dump(exclude={"compensating"}))


@router.post(
    "/{order_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CancelAcceptedResponse,
    summary="Cancel an order that is not yet confirmed: its saga compensates",
)
async def cancel_order(
    order_id: str,
    client: TemporalDep,
    engine: EngineDep,
    body: Annotated[CancelOrderRequest | None, Body()] = None,
) -> CancelAcceptedResponse:
    if len(order_id) > MAX_ORDER_ID:
        raise _not_found(order_id)
    reason = (body or CancelOrderRequest()).reason
    try:
        accepted = await sagas.request_cancel(client, order_id, reason)
    except sagas.NotCancellable as err:
        raise Problem(409, "Order not cancellable", str(err), code="order-not-cancellable") from err
    if accepted is not None:
        return CancelAcceptedResponse(order_id=order_id)
    record = await queries.order_record(engine, order_id)
    if record is None:
        raise _not_found(order_id)
    raise Problem(
        409,
        "Order not cancellable",
        f"order {order_id} is already {record.status}",
        code="order-not-cancellable",
    )
