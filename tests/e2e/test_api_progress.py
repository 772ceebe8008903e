"""A client that waits (`Prefer: wait=N`), and one that polls: neither costs a workflow query."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from temporalio import activity

from domain.activities import Act
from domain.orders import order_id_from
from tests.conftest import start_saga
from tests.e2e.test_api import order_body
from wiring.activities import all_activities
from wiring.root import build_workers, running

pytestmark = pytest.mark.asyncio


async def test_a_client_that_prefers_to_wait_gets_the_final_order_in_one_call(api, product):
    sku = await product(stock=5, price=700)

    answer = await api.post("/orders", json=order_body(sku, 2), headers={"Prefer": "wait=20"})

    assert answer.status_code == 200, answer.text
    assert answer.headers["Preference-Applied"] == "wait=20"
    order = answer.json()
    assert (order["status"], order["total"]) == ("CONFIRMED", 1400)
    assert order["steps"][-1] == "confirm_order"
    assert answer.headers["Location"] == f"/orders/{order['order_id']}"


async def test_a_wait_that_passes_first_is_answered_as_without_it(api, product, provider_admin):
    sku = await product(stock=5)
    down = {"status": 503, "path_contains": "/authorizations"}
    assert (await provider_admin.post("/admin/faults", json=down)).status_code == 201

    started = time.monotonic()
    answer = await api.post("/orders", json=order_body(sku), headers={"Prefer": "wait=1"})
    took = time.monotonic() - started

    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "PENDING"
    assert "Preference-Applied" not in answer.headers
    assert 1 <= took < 10


@pytest.mark.parametrize("prefer", ["wait=soon", "wait=-3", "respond-async"])
async def test_a_wait_it_cannot_read_is_ignored(api, product, prefer):
    answer = await api.post("/orders", json=order_body(await product()), headers={"Prefer": prefer})

    assert answer.status_code == 202, answer.text
    assert "Preference-Applied" not in answer.headers


async def test_a_polled_saga_shows_its_committed_steps_though_its_worker_is_gone(
    api, product, client, engine, settings, provider_client
):
    """No worker answers for it, so a query could not: the steps come from the keys."""
    reached = asyncio.Event()

    @activity.defn(name=Act.CREATE_SHIPMENT)
    async def create_shipment(cmd: object) -> object:
        reached.set()
        await activity.wait_for_worker_shutdown()
        raise RuntimeError("worker stopped")  # retryable: waits for the next worker

    queue = f"polled-{uuid.uuid4().hex[:8]}"
    real = all_activities(engine, settings, provider_client)
    stand_in = {**real, Act.CREATE_SHIPMENT: create_shipment}
    async with running(build_workers(client, queue, stand_in)):
        handle = await start_saga(client, queue, [(await product(), 1)])
        await asyncio.wait_for(reached.wait(), timeout=20)
    try:
        started = time.monotonic()
        read = await api.get(f"/orders/{order_id_from(handle.id)}")
        read_s = time.monotonic() - started
    finally:
        await handle.terminate("test over")

    assert read.status_code == 200, read.text
    shown = read.json()
    assert shown["steps"] == ["create_order", "check_fraud", "reserve_stock", "charge_payment"]
    assert (shown["status"], shown["current_step"]) == ("PENDING", "create_shipment")
    assert read_s < 1  # a query would have waited for its 2 s timeout
