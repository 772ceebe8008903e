"""POST /orders/{id}/returns and the reads that show returns, against the real stack."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain.returns import return_id_for, return_workflow_id
from tests import factories
from tests.factories import eventually

pytestmark = pytest.mark.asyncio


async def confirmed_order(api: httpx.AsyncClient, sku: str, quantity: int) -> str:
    body = {
        "customer_id": factories.customer(),
        "items": [{"sku": sku, "quantity": quantity}],
        "payment_token": "tok_visa",
    }
    order_id = str((await api.post("/orders", json=body)).json()["order_id"])

    async def status() -> str:
        response = await api.get(f"/orders/{order_id}")
        return str(response.json()["status"]) if response.status_code == 200 else "PENDING"

    assert await eventually(status, lambda s: s != "PENDING") == "CONFIRMED"
    return order_id


async def post_return(
    api: httpx.AsyncClient, order_id: str, lines: list[tuple[str, int]], key: str | None = None
) -> httpx.Response:
    body = {"items": [{"sku": sku, "quantity": qty} for sku, qty in lines]}
    headers = {"Idempotency-Key": key or f"ret-{uuid.uuid4().hex}"}
    return await api.post(f"/orders/{order_id}/returns", json=body, headers=headers)


async def ended_return(api: httpx.AsyncClient, location: str) -> dict[str, Any]:
    async def fetch() -> dict[str, Any]:
        response = await api.get(location)
        return dict(response.json()) if response.status_code == 200 else {"status": "OPEN"}

    return await eventually(fetch, lambda r: r["status"] != "OPEN")


async def no_workflow(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        return err.status == RPCStatusCode.NOT_FOUND
    return False


async def test_a_return_closes_and_the_order_shows_it(api, product, engine):
    sku = await product(stock=10, price=1500)
    order_id = await confirmed_order(api, sku, 2)

    response = await post_return(api, order_id, [(sku, 1)])

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "OPEN"
    location = response.headers["Location"]
    assert location == f"/orders/{order_id}/returns/{accepted['return_id']}"
    ended = await ended_return(api, location)
    assert ended["status"] == "CLOSED"
    assert (ended["value"], ended["card_refunded"], ended["store_credit_refunded"]) == (
        1500,
        1500,
        0,
    )
    assert ended["lines"] == [{"sku": sku, "quantity": 1, "unit_price": 1500}]
    order = (await api.get(f"/orders/{order_id}")).json()
    assert [r["return_id"] for r in order["returns"]] == [accepted["return_id"]]
    assert order["returns"][0]["status"] == "CLOSED"
    assert await factories.stock_of(engine, sku) == 9


async def test_a_repeated_return_is_answered_once_and_a_reused_key_refused(api, product, engine):
    sku = await product(stock=10, price=700)
    order_id = await confirmed_order(api, sku, 2)
    first = await post_return(api, order_id, [(sku, 2)], key="same-return")
    await ended_return(api, first.headers["Location"])

    repeated = await post_return(api, order_id, [(sku, 2)], key="same-return")
    reused = await post_return(api, order_id, [(sku, 1)], key="same-return")
    another = await post_return(api, order_id, [(sku, 1)])

    assert repeated.status_code == 200, repeated.text
    assert repeated.json() == {**first.json(), "status": "CLOSED"}
    assert reused.status_code == 409
    assert reused.json()["type"] == "/problems/idempotency-key-reused"
    # The same goods under a new key: more than is left (all were returned).
    assert another.status_code == 409, another.text
    problem = another.json()
    assert problem["type"] == "/problems/return-exceeds-order"
    assert problem["errors"] == [
        {"field": "items[0].quantity", "message": f"0 of the 2 x {sku} bought are left to return"}
    ]
    count = "SELECT count(*) FROM orders.returns WHERE order_id = :order_id"
    assert await factories.count(engine, count, order_id=order_id) == 1
    assert await factories.stock_of(engine, sku) == 10


async def test_returns_the_order_cannot_take_start_nothing(api, client, product, engine):
    sku, other = await product(stock=10, price=400), await product(stock=10, price=400)
    order_id = await confirmed_order(api, sku, 2)
    cases = {
        "over": ([(sku, 3)], 409, "items[0].quantity"),
        "unknown-sku": ([(sku, 1), (other, 1)], 422, "items[1].sku"),
        "twice": ([(sku, 1), (sku, 1)], 422, "items"),
    }
    for key, (lines, code, field) in cases.items():
        response = await post_return(api, order_id, lines, key=key)

        assert response.status_code == code, (key, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert field in [e["field"] for e in response.json()["errors"]], (key, response.json())
        assert await no_workflow(client, return_workflow_id(return_id_for(order_id, key)))
    keyless = await api.post(f"/orders/{order_id}/returns", json={"items": []})
    assert keyless.status_code == 422
    fields = {e["field"] for e in keyless.json()["errors"]}
    assert {"header.Idempotency-Key", "items"} <= fields, fields
    count = "SELECT count(*) FROM orders.returns WHERE order_id = :order_id"
    assert await factories.count(engine, count, order_id=order_id) == 0
    assert await factories.stock_of(engine, sku) == 8


async def test_a_return_of_a_cancelled_order_is_refused(api, product):
    sku = await product(stock=10, price=400)
    body = {
        "customer_id": factories.customer(),
        "items": [{"sku": sku, "quantity": 1}],
        "payment_token": "tok_decline",
    }
    order_id = str((await api.post("/orders", json=body)).json()["order_id"])

    async def status() -> str:
        response = await api.get(f"/orders/{order_id}")
        return str(response.json()["status"]) if response.status_code == 200 else "PENDING"

    assert await eventually(status, lambda s: s != "PENDING") == "CANCELLED"
    response = await post_return(api, order_id, [(sku, 1)])

    assert response.status_code == 409
    assert response.json()["type"] == "/problems/order-not-returnable"
    unknown = await post_return(api, str(uuid.uuid4()), [(sku, 1)])
    assert unknown.status_code == 404


async def test_a_returns_events_reach_the_order_history(api, product, relay, order_history):
    sku = await product(stock=10, price=900)
    order_id = await confirmed_order(api, sku, 1)
    response = await post_return(api, order_id, [(sku, 1)])
    await ended_return(api, response.headers["Location"])

    async def history() -> list[str]:
        events = (await api.get(f"/orders/{order_id}/events", params={"limit": 100})).json()
        return [e["event_type"] for e in events]

    types = await eventually(history, lambda t: "ReturnClosed" in t)
    returned = [t for t in types if t.startswith(("Return", "StockRestocked"))]
    assert returned == [
        "ReturnOpened",
        "ReturnReceived",
        "StockRestocked",
        "ReturnCardRefunded",
        "ReturnClosed",
    ], types
