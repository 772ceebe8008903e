"""POST /orders prices requests from prices the API keeps (api.catalog): what it may not miss;
and the summary its saga starts with (domain.order_summary)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import update
from temporalio.service import RPCError, RPCStatusCode

from api.sagas import order_id_for_key
from db.tables import products
from domain.order_summary import TIMES
from domain.orders import workflow_id_for
from tests import factories

pytestmark = pytest.mark.asyncio


def body(sku: str, **overrides: object) -> dict[str, object]:
    return {
        "customer_id": factories.customer(),
        "items": [{"sku": sku, "quantity": 1}],
        "payment_token": "tok_visa",
        **overrides,
    }


async def set_product(engine, sku: str, **values: object) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(products).where(products.c.sku == sku).values(**values))


async def nothing_started(engine, client, key: str) -> bool:
    order_id = order_id_for_key(key)
    claims = await factories.count(
        engine, "SELECT count(*) FROM orders.order_requests WHERE order_id = :o", o=order_id
    )
    try:
        await client.get_workflow_handle(workflow_id_for(order_id)).describe()
    except RPCError as err:
        return claims == 0 and err.status == RPCStatusCode.NOT_FOUND
    return False


async def test_store_credit_is_checked_against_the_price_of_now(api, product, engine, client):
    sku = await product(price=1000)
    first = await api.post("/orders", json=body(sku))  # the API now keeps the price 1000
    assert first.status_code == 202, first.text
    await set_product(engine, sku, price=500)
    key = f"credit-{uuid.uuid4()}"

    refused = await api.post(
        "/orders", json=body(sku, store_credit=800), headers={"Idempotency-Key": key}
    )

    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["store_credit"]
    assert "(500)" in refused.json()["errors"][0]["message"]
    assert await nothing_started(engine, client, key)


async def test_a_product_added_after_others_were_priced_is_known_at_once(api, product):
    known = await product()
    assert (await api.post("/orders", json=body(known))).status_code == 202

    added = await product()
    placed = await api.post("/orders", json=body(added))

    assert placed.status_code == 202, placed.text


async def test_lines_in_two_currencies_are_refused_before_any_saga_starts(
    api, product, engine, client
):
    sku, other = await product(), await product()
    await set_product(engine, other, currency="USD")
    key = f"mixed-{uuid.uuid4()}"
    mixed = body(sku, items=[{"sku": sku, "quantity": 1}, {"sku": other, "quantity": 2}])

    refused = await api.post("/orders", json=mixed, headers={"Idempotency-Key": key})

    assert refused.status_code == 422, refused.text
    assert [e["field"] for e in refused.json()["errors"]] == ["items"]
    assert await nothing_started(engine, client, key)


async def test_the_saga_starts_with_a_summary_of_the_order_and_no_token(api, product, client):
    sku = await product(price=990)
    sent = body(sku, items=[{"sku": sku, "quantity": 2}])

    placed = await api.post("/orders", json=sent)

    assert placed.status_code == 202, placed.text
    handle = client.get_workflow_handle(workflow_id_for(placed.json()["order_id"]))
    summary = await (await handle.describe()).static_summary()
    assert summary == f"2 {TIMES} {sku} for {sent['customer_id']}, €19.80, card"
    assert "tok_" not in str(summary)
