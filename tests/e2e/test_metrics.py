"""Metrics, scraped after real orders: the worker's endpoint and the API's."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowFailureError

from db.tables import orders
from observability.temporal_metrics import prometheus_runtime
from stack.ports import LOOPBACK, free_port
from temporal_client import connect
from tests import factories
from tests.conftest import start_saga
from tests.prometheus import samples, series
from wiring.activities import payment_provider_client
from wiring.root import open_bulkheads, running

pytestmark = pytest.mark.timeout(120)


async def test_the_worker_endpoint_counts_sagas_steps_decisions_and_the_breaker(
    settings, product, engine
):
    port = free_port()
    runtime = prometheus_runtime(LOOPBACK, port)
    client = await connect(settings.temporal(), runtime=runtime)
    queue = f"metrics-{uuid.uuid4().hex[:8]}"
    own = settings.model_copy(update={"task_queue": queue})
    provider = payment_provider_client(own.provider(), runtime.metric_meter)
    workers, engines = open_bulkheads(client, own, provider)
    sku = await product(stock=20, price=1000)
    customer = await factories.insert_wallet(engine, balance=500)
    try:
        async with running(workers):
            handles = [
                await start_saga(client, queue, [(sku, 1)]),
                await start_saga(client, queue, [(sku, 1)]),
                await start_saga(client, queue, [(sku, 1)], payment_token="tok_decline"),
                await start_saga(client, queue, [(sku, 1)], customer_id=customer, store_credit=500),
            ]
            for handle in handles:
                with contextlib.suppress(WorkflowFailureError):
                    await handle.result()
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"http://{LOOPBACK}:{port}/metrics")).text
    finally:
        await provider.aclose()
        for one in engines.values():
            await one.dispose()

    mine = {"task_queue": queue}
    assert sum(samples(text, "saga_started_total", **mine)) == 4
    assert samples(text, "saga_started_total", settlement="two_phase", **mine) == [1]
    assert samples(text, "saga_confirmed_total", **mine) == [3]
    assert samples(text, "saga_compensated_total", reason="PaymentDeclined", **mine) == [1]
    undone = {"undo": "cancel_order", **mine}
    assert samples(text, "saga_compensations_total", **undone) == [1]
    assert samples(text, "two_phase_decisions_total", decision="COMMIT", **mine) == [1]
    reserved = samples(
        text,
        "saga_step_duration_seconds_count",
        activity_type="reserve_stock",
        outcome="ok",
        # A local step: it runs on the workflow's worker, on its queue.
        task_queue=queue,
    )
    assert reserved == [3]
    charged = {"activity_type": "charge_payment", "task_queue": f"{queue}-payments"}
    assert samples(text, "saga_step_duration_seconds_count", outcome="refused", **charged) == [1]
    assert samples(text, "saga_circuit_breaker_state", breaker="payment-provider") == [0]
    # The SDK's own figures come on the same endpoint.
    assert sum(samples(text, "temporal_workflow_completed_total", **mine)) >= 3


async def test_the_api_counts_requests_by_route_template(api, product, engine):
    sku = await product()
    placed: list[Any] = []
    for _ in range(3):
        body = {"customer_id": "metrics", "items": [{"sku": sku, "quantity": 1}]}
        placed.append(await api.post("/orders", json={**body, "payment_token": "tok_visa"}))
    first = placed[0].json()["order_id"]
    # Its row written, the saga has run a task: the one GET gets its 200, not a 503.
    await factories.eventually(lambda: factories.rows(engine, orders, first), bool)
    await api.get(f"/orders/{first}")
    await api.post("/orders", json={"items": []})  # 422

    text = (await api.get("/metrics")).text

    assert samples(
        text, "saga_api_requests_total", method="POST", route="/orders", status="202"
    ) == [3]
    assert samples(
        text, "saga_api_requests_total", method="POST", route="/orders", status="422"
    ) == [1]
    got = samples(text, "saga_api_requests_total", route="/orders/{order_id}", status="200")
    assert got == [1]
    assert samples(
        text, "saga_api_request_duration_seconds_count", method="POST", route="/orders"
    ) == [4]
    assert not [s for s in text.splitlines() if placed[0].json()["order_id"] in s]


async def test_odd_methods_and_unmatched_paths_add_no_series(api):
    # Each kind of request once, so its series exist before the count (a scrape too).
    await api.request("BREW", "/orders")
    await api.request("BREW", "/no-such-page")
    await api.get("/no-such-page")
    await api.get("/metrics")
    before = (await api.get("/metrics")).text
    odd = [f"X-METHOD-{n:04d}" for n in range(1000)] + ["PROPFIND", "CONNECT", "TRACE", "QUERY"]

    for n, method in enumerate(odd):
        path = "/orders" if n % 2 else f"/nowhere/{n}"
        assert (await api.request(method, path)).status_code in (404, 405)
    for n in range(50):
        assert (await api.get(f"/orders/{n}/nowhere")).status_code == 404
    after = (await api.get("/metrics")).text

    assert series(after) == series(before)
    assert len(after.splitlines()) == len(before.splitlines())
    answered = samples(after, "saga_api_requests_total", method="OTHER")
    assert sum(answered) == len(odd) + 2
    on_orders = samples(
        after, "saga_api_requests_total", method="OTHER", route="/orders", status="405"
    )
    assert on_orders == [len(odd) // 2 + 1]
    unmatched_gets = samples(
        after, "saga_api_requests_total", method="GET", route="OTHER", status="404"
    )
    assert unmatched_gets == [51]
    assert not [line for line in after.splitlines() if "X-METHOD" in line or "nowhere" in line]
