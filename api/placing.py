"""Placing an order: pricing and checking the request, claiming its id, starting its flow.

What POST /orders does between the request and its answer (api.routes.orders):
an `Idempotency-Key` claims the order id before anything starts, so a retried
or concurrent request finds the first one's fingerprint instead of a second
saga; an orchestrated order starts its saga, a choreographed one writes its
first row.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from api import choreographed, order_claims, queries, sagas
from api.catalog import PriceCache
from api.order_problems import invalid_field
from api.problems import Problem
from api.schemas import PlaceOrderRequest
from domain.activities import PricedOrder
from domain.orders import OrderStatus, PlaceOrder, SagaMode
from domain.pricing import MixedCurrencies, UnknownProducts, price_order
from settings_slices import ApiFlows


async def ended_order(
    client: Client, engine: AsyncEngine, order_id: str, wait: int
) -> JSONResponse | None:
    """The final order (200) once its saga ended within `wait` seconds; None if it did not."""
    if not await sagas.ended_within(client, order_id, wait):
        return None
    final = await queries.order_record(engine, order_id)
    if final is None or final.status == OrderStatus.PENDING:
        return None
    headers = {"Location": f"/orders/{order_id}", "Preference-Applied": f"wait={wait}"}
    return JSONResponse(final.model_dump(mode="json"), headers=headers)


async def price_request(catalog: PriceCache, body: PlaceOrderRequest) -> PricedOrder:
    """The order at catalogue prices; 422 naming every unknown sku, or lines in two currencies."""
    items = [line.to_domain() for line in body.items]
    skus = [line.sku for line in items]
    # The total decides whether the request is valid only when store credit
    # pays part of it or no card token came: then it is priced as of now.
    decides = body.store_credit > 0 or not body.payment_token
    prices = await (catalog.current(skus) if decides else catalog.prices(skus))
    try:
        return price_order("", items, prices)
    except UnknownProducts:
        unknown = [f"items[{n}].sku" for n, sku in enumerate(skus) if sku not in prices]
        raise Problem(
            422,
            "Unknown product",
            f"no product with that sku: {', '.join(unknown)}",
            code="unknown-product",
            errors=[{"field": field, "message": "unknown sku"} for field in unknown],
        ) from None
    except MixedCurrencies as err:
        raise invalid_field("items", str(err)) from None


def check_payment(body: PlaceOrderRequest, total: int) -> None:
    # The saga checks the split again against the prices create_order records;
    # this check answers the common mistakes at once, before any saga starts.
    if body.store_credit > total:
        raise invalid_field("store_credit", f"exceeds the order total ({total})")
    card_part = total - body.store_credit
    if card_part > 0 and not body.payment_token:
        raise invalid_field(
            "payment_token", f"required: the card pays {card_part} of the total {total}"
        )


@dataclass(frozen=True)
class Placing:
    order: PlaceOrder
    mode: SagaMode
    summary: str  # its saga's line in the Web UI's list of workflows


async def existing_fingerprint(
    client: Client, engine: AsyncEngine, flows: ApiFlows, placing: Placing, keyed: bool
) -> str | None:
    """Start the order; or, if its id is taken, the fingerprint of the request that took it."""
    order, mode = placing.order, placing.mode
    if not keyed:  # an id from no key is a fresh uuid4: nobody else holds it, nothing records it
        return await start(client, engine, flows, placing, recorded_known=True)
    claim = await order_claims.claim_order_id(engine, order.order_id, order.request_hash, mode)
    if claim.holder != order.request_hash:
        return claim.holder
    if claim.recorded is not None:
        existing: str | None = claim.recorded
    else:
        existing = await start(client, engine, flows, placing, recorded_known=claim.claimed)
    if existing is not None and existing != order.request_hash:
        await order_claims.settle_claim(engine, order.order_id, order.request_hash, existing)
    return existing


async def start(
    client: Client,
    engine: AsyncEngine,
    flows: ApiFlows,
    placing: Placing,
    recorded_known: bool = False,
) -> str | None:
    """Start the order unless it exists: then the fingerprint it records.

    `recorded_known`: the caller has just read that no order row has this id.
    """
    order, mode = placing.order, placing.mode
    # The database outlives Temporal's retention of closed workflows; ask it first.
    recorded = (
        None if recorded_known else await order_claims.request_fingerprint(engine, order.order_id)
    )
    if recorded is not None:
        return recorded
    if mode is SagaMode.ORCHESTRATION:
        # A replay after a lost answer, or after a start that failed, starts it (once) now.
        return await sagas.start_saga(client, flows.task_queue, order, placing.summary)
    try:
        await choreographed.place(engine, flows.choreography_timeout_s, order)
    except choreographed.Refused as err:
        # Nothing was written: the key may be used again with a valid body.
        await order_claims.release_claim(engine, order.order_id, order.request_hash)
        raise invalid_field("items", str(err)) from err
    # A request with this key may have placed the order first (with another
    # body, or in the other mode): the row says which request it was.
    recorded = await order_claims.request_fingerprint(engine, order.order_id)
    return None if recorded == order.request_hash else recorded
