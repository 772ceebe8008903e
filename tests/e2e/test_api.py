"""The HTTP API against the real stack: what a client sees, and what it leaves behind."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import delete
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from db.tables import order_requests, orders
from domain.activities import (
    Act,
    ChargePayment,
    PaymentCharged,
    PaymentRefunded,
    RefundPayment,
)
from domain.order_saga import SagaState
from domain.orders import order_id_from
from tests import factories
from tests.conftest import start_saga
from tests.factories import eventually
from tests.pages import walk
from wiring.activities import all_activities
from wiring.root import build_workers, running

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
        if response.status_code == 503:  # asked before the saga's first task: not yet
            return {"status": "PENDING"}
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
    assert order["two_phase"] is None
    assert await factories.stock_of(engine, sku) == 18


async def test_declined_order_reads_cancelled_with_reason(api, product):
    sku = await product()
    accepted = (await api.post("/orders", json=order_body(sku, payment_token="tok_decline"))).json()

    order = await final_order(api, accepted["order_id"])

    assert order["status"] == "CANCELLED"
    assert order["failure_reason"] == "The card was declined."
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
    assert [r.status_code for r in responses].count(202) == 1
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


async def test_idempotency_key_with_another_body_is_a_conflict_and_changes_nothing(
    api, product, engine
):
    sku = await product(price=700)
    key = f"key-{uuid.uuid4()}"
    body = order_body(sku, 1)
    first = await api.post("/orders", json=body, headers={"Idempotency-Key": key})
    order_id = first.json()["order_id"]

    second = await api.post(
        "/orders",
        json={**body, "items": [{"sku": sku, "quantity": 2}]},
        headers={"Idempotency-Key": key},
    )

    assert first.status_code == 202
    assert second.status_code == 409
    assert second.headers["content-type"] == "application/problem+json"
    assert "Idempotency-Key" in second.json()["detail"]
    order = await final_order(api, order_id)
    assert (order["status"], order["customer_id"], order["total"]) == (
        "CONFIRMED",
        body["customer_id"],
        700,
    )
    assert order["items"] == [{"sku": sku, "quantity": 1, "unit_price": 700, "currency": "EUR"}]
    assert await factories.stock_of(engine, sku) == 99


async def test_an_order_placed_before_claims_keeps_answering_its_own_request(api, product, engine):
    """An order from before migration 0011 (or started without the API) has no
    claim: another body is refused from its row, and its own request, replayed
    afterwards, is still answered as a replay."""
    sku = await product()
    key = {"Idempotency-Key": f"key-{uuid.uuid4()}"}
    body = order_body(sku, 1)
    order_id = (await api.post("/orders", json=body, headers=key)).json()["order_id"]
    await final_order(api, order_id)
    async with engine.begin() as conn:
        await conn.execute(delete(order_requests).where(order_requests.c.order_id == order_id))

    other = await api.post("/orders", json=order_body(sku, 2), headers=key)
    replay = await api.post("/orders", json=body, headers=key)

    assert other.status_code == 409
    assert (replay.status_code, replay.json()["order_id"]) == (200, order_id)
    [claim] = await factories.rows(engine, order_requests, order_id)
    [row] = await factories.rows(engine, orders, order_id)
    assert claim.request_hash == row.request_hash


def _printable(value: Any) -> bool:
    return isinstance(value, str) and value != "" and value.isprintable()


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
        (lambda b: b["items"][0].update(sku=b["items"][0]["sku"] + "\x00"), "items[0].sku"),
        (lambda b: b.pop("payment_token"), "payment_token"),
        # The card pays what store credit does not: 1000 - 400.
        (lambda b: b.update(payment_token="", store_credit=400), "payment_token"),
        (lambda b: b.update(payment_token="tok\x00visa"), "payment_token"),
        (lambda b: b.update(store_credit=1001), "store_credit"),
        (lambda b: b.update(store_credit=-1), "store_credit"),
        (lambda b: b.update(customer_id=""), "customer_id"),
        (lambda b: b.update(customer_id=42), "customer_id"),
        (lambda b: b.update(customer_id=f"{factories.customer()}\x00"), "customer_id"),
        (lambda b: b.update(customer_id=f"{factories.customer()}\n"), "customer_id"),
        (lambda b: b.update(customer_id="x" * 129), "customer_id"),
        (lambda b: b.update(colour="red"), "colour"),
        (lambda b: b.update(mode="telepathy"), "mode"),
        # Store credit settles by 2PC, which only the orchestrated saga runs.
        (lambda b: b.update(mode="choreography", store_credit=400), "mode"),
    ],
)
async def test_bad_order_is_refused_naming_the_field_and_leaves_nothing(
    api, product, engine, client, mutate, field
):
    body = order_body(await product(price=1000))
    mutate(body)
    sent = body.get("customer_id")

    response = await api.post("/orders", json=body)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert field in [e["field"] for e in problem["errors"]]
    assert "Traceback" not in response.text
    if isinstance(sent, str) and sent:
        # By prefix: the id sent may hold characters no query can carry.
        prefix = sent.rstrip("\x00\n")
        assert (
            await factories.count(
                engine,
                "SELECT count(*) FROM orders.orders WHERE starts_with(customer_id, :p)",
                p=prefix,
            )
            == 0
        )
        if _printable(sent):
            assert await workflows_for(client, f"CustomerId = '{sent}'") == []


async def test_malformed_json_is_a_problem_not_a_crash(api):
    response = await api.post(
        "/orders", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["body"]


async def test_wrong_method_is_405_naming_the_allowed_ones(api):
    response = await api.delete("/products")

    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["allow"] == "GET"


async def test_unknown_order_is_404(api):
    response = await api.get(f"/orders/{uuid.uuid4()}")

    assert response.status_code == 404
    assert response.json()["title"] == "Order not found"


@pytest.mark.parametrize("order_id", ["abc%00def", "abc%0Adef", "x" * 65])
async def test_impossible_order_id_is_404_not_a_crash(api, order_id):
    read = await api.get(f"/orders/{order_id}")
    cancel = await api.post(f"/orders/{order_id}/cancel")

    assert (read.status_code, cancel.status_code) == (404, 404)
    assert read.headers["content-type"] == "application/problem+json"


async def test_control_character_in_customer_filter_is_422(api):
    response = await api.get("/orders", params={"customer_id": "cust\x00"})

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["query.customer_id"]


async def test_cancel_after_confirmation_is_409(api, product):
    accepted = (await api.post("/orders", json=order_body(await product()))).json()
    await final_order(api, accepted["order_id"])

    response = await api.post(f"/orders/{accepted['order_id']}/cancel")

    assert response.status_code == 409
    assert "CONFIRMED" in response.json()["detail"]


async def test_cancel_unknown_order_is_404(api):
    assert (await api.post(f"/orders/{uuid.uuid4()}/cancel")).status_code == 404


async def test_cancel_of_a_saga_that_ended_before_its_order_was_recorded_is_409(api, saga):
    # create_order refuses an unknown sku, so the saga ends with no order row.
    handle = await saga([(f"NO-SUCH-{uuid.uuid4().hex[:8]}", 1)])
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    order_id = order_id_from(handle.id)

    read = await api.get(f"/orders/{order_id}")
    cancel = await api.post(f"/orders/{order_id}/cancel")

    assert (read.status_code, read.json()["status"]) == (200, "CANCELLED")
    assert cancel.status_code == 409, cancel.text
    assert "CANCELLED" in cancel.json()["detail"]


async def test_repeated_cancel_while_compensating_is_accepted_again(
    api, product, client, custom_worker
):
    charge_may_finish, undo_may_finish = asyncio.Event(), asyncio.Event()

    @activity.defn(name=Act.CHARGE_PAYMENT)
    async def charge_payment(cmd: ChargePayment) -> PaymentCharged:
        await charge_may_finish.wait()
        return PaymentCharged(payment_id=str(uuid.uuid4()), amount=cmd.amount)

    # The undo held open is the refund, a regular activity: a local one (the
    # stock's release) holds the workflow task, and an update waits for the
    # task's heartbeat (8 s) longer than the API does (5 s).
    @activity.defn(name=Act.REFUND_PAYMENT)
    async def refund_payment(cmd: RefundPayment) -> PaymentRefunded:
        await undo_may_finish.wait()
        return PaymentRefunded(refunded_amount=0)

    queue = await custom_worker(
        {Act.CHARGE_PAYMENT: charge_payment, Act.REFUND_PAYMENT: refund_payment}
    )
    handle = await start_saga(client, queue, [(await product(), 1)])
    order_id = order_id_from(handle.id)

    async def state() -> SagaState:
        current: SagaState = await handle.query("state", result_type=SagaState)
        return current

    await eventually(state, lambda s: s.current_step == Act.CHARGE_PAYMENT)
    first = await api.post(f"/orders/{order_id}/cancel", json={"reason": "changed my mind"})
    charge_may_finish.set()
    await eventually(state, lambda s: s.compensating)

    again = await api.post(f"/orders/{order_id}/cancel", json={"reason": "really"})
    undo_may_finish.set()

    assert first.status_code == 202, first.text
    assert again.status_code == 202, again.text
    assert again.json() == {"order_id": order_id, "status": "CANCELLING"}
    order = await final_order(api, order_id)
    assert (order["status"], order["failure_reason"]) == ("CANCELLED", "changed my mind")


async def test_saga_without_a_worker_reads_from_the_database_and_cancel_is_503(
    api, product, client, engine, settings, provider_client
):
    reached = asyncio.Event()

    # A remote step: its retry waits on its own task queue for the next worker.
    # (A local step lives in its workflow task, which the next worker retries.)
    @activity.defn(name=Act.CHARGE_PAYMENT)
    async def charge_payment(cmd: ChargePayment) -> PaymentCharged:
        reached.set()
        await activity.wait_for_worker_shutdown()
        raise ApplicationError("worker stopped")  # retryable: waits for the next worker

    queue = f"gone-{uuid.uuid4().hex[:8]}"
    real = all_activities(engine, settings, provider_client)
    stand_in = {**real, Act.CHARGE_PAYMENT: charge_payment}
    async with running(build_workers(client, queue, stand_in)):
        handle = await start_saga(client, queue, [(await product(), 1)])
        await asyncio.wait_for(reached.wait(), timeout=20)
    order_id = order_id_from(handle.id)
    try:
        started = time.monotonic()
        read = await api.get(f"/orders/{order_id}")
        read_s = time.monotonic() - started
        started = time.monotonic()
        cancel = await api.post(f"/orders/{order_id}/cancel")
        cancel_s = time.monotonic() - started
    finally:
        await handle.terminate("test over")

    assert (read.status_code, read.json()["status"]) == (200, "PENDING")
    # What its steps committed, though no worker answers for the saga.
    assert read.json()["steps"] == ["create_order", "check_fraud", "reserve_stock"]
    assert read_s < 1
    assert cancel.status_code == 503, cancel.text
    assert cancel.headers["content-type"] == "application/problem+json"
    assert "Retry-After" in cancel.headers
    assert cancel_s < 10


async def test_saga_without_a_worker_or_a_record_is_503_not_404(api, product, client):
    handle = await start_saga(client, f"nobody-{uuid.uuid4().hex[:8]}", [(await product(), 1)])
    try:
        started = time.monotonic()
        response = await api.get(f"/orders/{order_id_from(handle.id)}")
        elapsed = time.monotonic() - started
    finally:
        await handle.terminate("test over")

    assert response.status_code == 503, response.text
    assert response.json()["detail"] == "order state temporarily unavailable"
    assert elapsed < 5


async def test_products_list_the_catalog_with_free_units(api, product):
    sku = await product(stock=33, price=4200)

    # Every test adds products of its own: the catalog takes pages.
    products = [p for page in await walk(api, "/products", limit=500) for p in page]

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
