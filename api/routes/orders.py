"""Orders: place (the machinery in api.placing), read (the view in api.order_view), list
and cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from api import paging, queries, return_queries, sagas
from api.deps import CatalogDep, EngineDep, FlowsDep, IdempotencyKey, SealerDep, TemporalDep
from api.order_problems import check_order_id, invalid_field, order_not_found, unavailable
from api.order_view import order_view
from api.placing import Placing, check_payment, ended_order, existing_fingerprint, price_request
from api.prefer import MAX_WAIT_S
from api.prefer import wait_seconds as prefer_wait
from api.problems import Problem
from api.roles import ORDER_TAKERS, READERS
from api.schemas import (
    ID_PATTERN,
    CancelAcceptedResponse,
    CancelOrderRequest,
    OrderAccepted,
    OrderEvent,
    OrderSummary,
    OrderView,
    PlaceOrderRequest,
)
from choreography import orders as choreographed_orders
from domain.choreography import correlation_id_for
from domain.order_summary import order_summary
from domain.orders import OrderStatus, PlaceOrder, SagaMode, workflow_id_for
from observability.logs import bind as bind_log_context

router = APIRouter(prefix="/orders", tags=["orders"])

PreferHeader = Annotated[
    str | None,
    Header(
        alias="Prefer",
        max_length=200,
        description=f"`wait=N` (RFC 7240): answer once the saga has ended, within N s"
        f" (at most {MAX_WAIT_S}); a wait not in digits is ignored",
    ),
]


@router.post(
    "",
    dependencies=ORDER_TAKERS,
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OrderAccepted,
    summary="Place an order: starts its saga",
    responses={
        200: {
            "model": OrderView | OrderAccepted,
            "description": "With `Prefer: wait=N`: the final order, its saga ended within N s"
            " (`Preference-Applied: wait=N`). Or a replayed Idempotency-Key",
        }
    },
)
async def place_order(
    body: PlaceOrderRequest,
    response: Response,
    client: TemporalDep,
    engine: EngineDep,
    flows: FlowsDep,
    sealer: SealerDep,
    catalog: CatalogDep,
    idempotency_key: IdempotencyKey = None,
    prefer: PreferHeader = None,
) -> OrderAccepted | JSONResponse:
    priced = await price_request(catalog, body)
    check_payment(body, priced.total)
    if body.mode is SagaMode.CHOREOGRAPHY and body.store_credit:
        raise invalid_field(
            "mode",
            "choreography settles card-only orders: store credit moves with stock and card "
            "by two-phase commit, which needs the orchestrated saga",
        )
    order_id = sagas.order_id_for_key(idempotency_key)
    order = PlaceOrder(
        order_id=order_id,
        customer_id=body.customer_id,
        items=[line.to_domain() for line in body.items],
        # Sealed here, opened only by the payment activities: the saga, the
        # stream and Temporal's history carry it sealed, whatever the codec.
        payment_token=sealer.seal(body.payment_token, order_id),
        # From the request, not the sealed token (a fresh nonce each time): a
        # retried request keeps its fingerprint.
        request_hash=body.fingerprint(),
        store_credit=body.store_credit,
        # settlement stays unset: the saga settles by 2PC when store credit is used.
        prepare_timeout_s=flows.prepare_timeout_s,
    )
    response.headers["Location"] = f"/orders/{order.order_id}"
    flow_id = (
        workflow_id_for(order.order_id)
        if body.mode is SagaMode.ORCHESTRATION
        else correlation_id_for(order.order_id)
    )
    bind_log_context(order_id=order.order_id, workflow_id=flow_id)
    placing = Placing(order, body.mode, order_summary(order, priced))
    existing = await existing_fingerprint(
        client, engine, flows, placing, keyed=idempotency_key is not None
    )
    wait = prefer_wait(prefer) if body.mode is SagaMode.ORCHESTRATION else None
    if existing is None:
        if wait is not None:
            ended = await ended_order(client, engine, order.order_id, wait)
            if ended is not None:
                return ended
        return OrderAccepted(order_id=order.order_id, status=OrderStatus.PENDING)
    if existing != order.request_hash:
        raise Problem(
            409,
            "Idempotency-Key reused",
            "this Idempotency-Key was used with a different request body",
            code="idempotency-key-reused",
        )
    response.status_code = status.HTTP_200_OK
    if wait is not None:
        ended = await ended_order(client, engine, order.order_id, wait)
        if ended is not None:
            return ended
    record = await queries.order_record(engine, order.order_id)
    return OrderAccepted(
        order_id=order.order_id, status=record.status if record else OrderStatus.PENDING
    )


@router.get(
    "",
    dependencies=READERS,
    response_model=list[OrderSummary],
    summary="List orders, newest first",
    responses={200: {"headers": paging.NEXT_PAGE}},
)
async def list_orders(
    request: Request,
    response: Response,
    engine: EngineDep,
    status: OrderStatus | None = None,
    customer_id: Annotated[
        str | None, Query(min_length=1, max_length=128, pattern=ID_PATTERN)
    ] = None,
    limit: paging.OrdersLimit = paging.ORDERS_DEFAULT,
    after: paging.OrdersAfter = None,
) -> list[OrderSummary]:
    listing = queries.OrderListing(status, customer_id, limit + 1, paging.time_key(after))
    found = await queries.list_orders(engine, listing)
    return paging.page(request, response, found, limit, lambda o: (o.created_at, o.order_id))


@router.get(
    "/{order_id}",
    dependencies=READERS,
    response_model=OrderView,
    summary="An order and its saga's progress",
)
async def get_order(order_id: str, client: TemporalDep, engine: EngineDep) -> OrderView:
    check_order_id(order_id)
    view = await order_view(order_id, client, engine)
    if view.status == OrderStatus.CONFIRMED:  # only a confirmed order takes returns
        view.returns = await return_queries.returns_of(engine, order_id)
    return view


@router.get(
    "/{order_id}/events",
    dependencies=READERS,
    response_model=list[OrderEvent],
    summary="An order's events, oldest first (the order-history read model)",
    responses={200: {"headers": paging.NEXT_PAGE}},
)
async def get_order_events(
    order_id: str,
    request: Request,
    response: Response,
    engine: EngineDep,
    limit: paging.OrderEventsLimit = paging.ORDER_EVENTS_DEFAULT,
    after: paging.OrderEventsAfter = None,
) -> list[OrderEvent]:
    check_order_id(order_id)
    events = await queries.order_events(engine, order_id, paging.event_key(after), limit + 1)
    if events is None:
        raise order_not_found(order_id)
    return paging.page(request, response, events, limit, lambda e: (e.occurred_at, e.event_id))


@router.post(
    "/{order_id}/cancel",
    dependencies=ORDER_TAKERS,
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
    check_order_id(order_id)
    reason = (body or CancelOrderRequest()).reason
    if await queries.saga_mode_of(engine, order_id) is SagaMode.CHOREOGRAPHY:
        return await _cancel_choreographed(engine, order_id, reason)
    try:
        accepted = await sagas.request_cancel(client, order_id, reason)
    except sagas.NotCancellable as err:
        raise Problem(409, "Order not cancellable", str(err), code="order-not-cancellable") from err
    except sagas.SagaUnavailable as err:
        raise unavailable(
            "the order's saga did not answer in time; the cancellation may still take effect"
        ) from err
    if accepted is not None:
        return CancelAcceptedResponse(order_id=order_id)
    raise await _closed(client, engine, order_id)


async def _cancel_choreographed(
    engine: AsyncEngine, order_id: str, reason: str
) -> CancelAcceptedResponse:
    """Cancelled here and now; the services' undos follow through the events."""
    closed = await choreographed_orders.cancel(engine, order_id, reason)
    if closed is None:
        raise order_not_found(order_id)
    if closed.status != OrderStatus.CANCELLED:
        detail = f"order {order_id} is already {closed.status}"
        raise Problem(409, "Order not cancellable", detail, code="order-not-cancellable")
    return CancelAcceptedResponse(order_id=order_id)


async def _closed(client: Client, engine: AsyncEngine, order_id: str) -> Problem:
    """Why a saga that takes no updates cannot be cancelled: 409 with its outcome, or 404."""
    record = await queries.order_record(engine, order_id)
    if record is None:
        # A saga that ended before create_order committed leaves no row, but
        # its closed workflow still answers the query: the order exists.
        try:
            live = await sagas.live_state(client, order_id)
        except sagas.SagaUnavailable as err:
            raise unavailable("order state temporarily unavailable") from err
        if live is None:
            return order_not_found(order_id)
        current = live.status
    else:
        current = record.status
    detail = (
        f"order {order_id} is already {current}"
        if current != OrderStatus.PENDING
        else f"the saga of order {order_id} has ended; it takes no cancellation"
    )
    return Problem(409, "Order not cancellable", detail, code="order-not-cancellable")
