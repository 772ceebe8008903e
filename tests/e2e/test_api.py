"""The HTTP API against the real stack: what a client sees, and what it leaves behind."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from tests import factories
from tests.factories import eventually

pytestmark = pytest.mark.asyncio


def order_body(sku: str, quantity: int = 1, **overrides: Any) -> dict[str, Any]:
    body = {
        "customer_id": factories.customer(),
        "items": [{"sku": sku, "quantity": quantity}],
        "payment_token": "tok_visa",
    }
    return {**body, **overrides}


async def final_order(api: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    async def fetch() -> dict[str, Any]:
        response = await api.get(f"/orders/{order_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    return await eventually(fetch, lambda o: o["status"] != "PENDING")


async def workflows_for(client: Client, query: str) -> list[Any]:
    return [wf async for wf in client.list_workflows(query)]


async def test_place_order_runs_to_confirmed(api, product, engine):
    sku = await product(stock=20, price=1500)

    response = await api.post("/orders", json=order_body(sku, 2))

    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "PENDING"
    assert response.headers["Location"] == f"/orders/{accepted['order_id']}"
    order = await final_order(api, accepted["order_id"])
    assert order["status"] == "CONFIRMED"
    assert order["total"] == 3000
    assert order["items"] == [{"sku": sku, "quantity": 2, "unit_price": 1500, "currency": "EUR"}]
    assert order["steps"][-1] == "confirm_order"
    assert order["compensations"] == []
    assert order["failure_reason"] is None
    assert await factories.stock_of(engine, sku) == 18


async def test_declined_order_reads_cancelled_with_reason(api, product):
    sku = await product()
    accepted = (await api.post("/orders", json=order_body(sku, payment_token="tok_decline"))).json()

    order = await final_order(api, accepted["order_id"])

    assert order["status"] == "CANCELLED"
    assert order["failure_reason"] == "card declined"
    assert order["compensations"] == ["release_stock", "cancel_order"]


async def test_same_idempotency_key_twenty_times_makes_one_order_and_one_charge(
    api, product, engine, client
):
    sku = await product(stock=50)
    body = order_body(sku, 1)
    key = f"key-{uuid.uuid4()}"

    responses = await asyncio.gather(
        *(api.post("/orders", json=body, headers={"Idempotency-Key": key}) for _ in range(20))
    )

    assert {r.status_code for r in responses} <= {200, 202}
    assert [r.status_code for r in responses].count(202) >= 1
    order_ids = {r.json()["order_id"] for r in responses}
    assert len(order_ids) == 1
    order_id = order_ids.pop()
    await final_order(api, order_id)
    assert len(await workflows_for(client, f"WorkflowId = 'order-{order_id}'")) == 1
    assert len(await factories.payments_of(engine, order_id)) == 1
    assert await factories.stock_of(engine, sku) == 49
    replay = await api.post("/orders", json=body, headers={"Idempotency-Key": key})
    assert (replay.status_code, replay.json()) == (
        200,
        {"order_id": order_id, "status": "CONFIRMED"},
    )


async def test_idempotency_key_with_another_body_is_a_conflict(api, product, engine):
    sku = await product()
    key = f"key-{uuid.uuid4()}"
    first = await api.post("/orders", json=order_body(sku, 1), headers={"Idempotency-Key": key})
    other_body = order_body(sku, 2)

    second = await api.post("/orders", json=other_body, headers={"Idempotency-Key": key})

    assert first.status_code == 202
    assert second.status_code == 409
    assert second.headers["content-type"] == "application/problem+json"
    assert "Idempotency-Key" in second.json()["detail"]
    orders_of_second = await factories.count(
        engine,
        "SELECT count(*) FROM orders.orders WHERE customer_id = :c",
        c=other_body["customer_id"],
    )
    assert orders_of_second == 0


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b.update(items=[]), "items"),
        (
            lambda b: b.update(items=[{"sku": b["items"][0]["sku"], "quantity": 0}]),
            "items[0].quantity",
        ),
        (
            lambda b: b.update(items=[{"sku": b["items"][0]["sku"], "quantity": 1001}]),
            "items[0].quantity",
        ),
        (lambda b: b["items"].append({"sku": "NO-SUCH-SKU", "quantity": 1}), "items[1].sku"),
        (lambda b: b.update(items=[{"sku": b["items"][0]["sku"], "quantity": 1}] * 101), "items"),
        (lambda b: b.pop("payment_token"), "payment_token"),
        (lambda b: b.update(customer_id=""), "customer_id"),
        (lambda b: b.update(customer_id=42), "customer_id"),
        (lambda b: b.update(colour="red"), "colour"),
    ],
)
async def test_bad_order_is_refused_naming_the_field_and_leaves_nothing(
    api, product, engine, client, mutate, field
):
    body = order_body(await product())
    customer_id = body["customer_id"]
    mutate(body)

    response = await api.post("/orders", json=body)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert field in [e["field"] for e in problem["errors"]]
    assert "Traceback" not in response.text
    if isinstance(customer_id, str):
        assert (
            await factories.count(
                engine, "SELECT count(*) FROM orders.orders WHERE customer_id = :c", c=customer_id
            )
            == 0
        )
        assert await workflows_for(client, f"CustomerId = '{customer_id}'") == []


async def test_malformed_json_is_a_problem_not_a_crash(api):
    response = await api.post(
        "/orders", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_unknown_order_is_404(api):
    response = await api.get(f"/orders/{uuid.uuid4()}")

    assert response.status_code == 404
    assert response.json()["title"] == "Order not found"


async def test_cancel_after_confirmation_is_409(api, product):
    accepted = (await api.post("/orders", json=order_body(await product()))).json()
    await final_order(api, accepted["order_id"])

    response = await api.post(f"/orders/{accepted['order_id']}/cancel")

    assert response.status_code == 409
    assert "CONFIRMED" in response.json()["detail"]


async def test_cancel_unknown_order_is_404(api):
    assert (await api.post(f"/orders/{uuid.uuid4()}/cancel")).status_code == 404


async def test_products_list_the_catalog_with_free_units(api, product):
    sku = await product(stock=33, price=4200)

    products = (await api.get("/products")).json()

    assert {
        "sku": sku,
        "name": f"test product {sku}",
        "price": 4200,
        "currency": "EUR",
        "available": 33,
    } in products


async def test_orders_listed_newest_first_by_customer_and_status(api, product):
    sku = await product()
    customer_id = factories.customer()
    ids = []
    for _ in range(3):
        accepted = (await api.post("/orders", json=order_body(sku, customer_id=customer_id))).json()
        await final_order(api, accepted["order_id"])
        ids.append(accepted["order_id"])

    listed = (
        await api.get("/orders", params={"customer_id": customer_id, "status": "CONFIRMED"})
    ).json()

    assert [o["order_id"] for o in listed] == list(reversed(ids))
    assert (await api.get("/orders", params={"status": "BOGUS"})).status_code == 422
    assert (await api.get("/orders", params={"limit": 0})).status_code == 422


async def test_health_and_readiness(api):
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgres": "ok", "temporal": "ok"}
