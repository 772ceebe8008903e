"""Cancelling an order while its 2PC is settled without the coordinator.

The coordinator logged COMMIT, committed stock and store credit, and is stuck
capturing the card (the provider answers 503 on /capture); an operator
terminates it; the saga resolves the transaction itself, and a cancel lands
while that resolution backs off on the capture. The order must end fully
undone: stock back, the wallet refunded, the card refunded; and the audit clean.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError

from audit import Scope, run_audit
from domain.activities import TwoPhaseAct
from domain.order_saga import SagaState
from domain.saga import CancelRequest
from domain.two_phase import coordinator_workflow_id
from tests import factories
from tests.factories import eventually

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]


async def resolution_retrying(handle: Any) -> bool:
    """The saga's own resolve_transaction is pending, past its first attempt."""
    description = await handle.describe()
    return any(
        p.activity_type.name == TwoPhaseAct.RESOLVE_TRANSACTION and p.attempt >= 2
        for p in description.raw_description.pending_activities
    )


async def cancel_by_update(handle: Any) -> None:
    await handle.execute_update("cancel", CancelRequest(reason="customer changed their mind"))


async def cancel_by_request(handle: Any) -> None:
    await handle.cancel()


@pytest.mark.parametrize("cancel", [cancel_by_update, cancel_by_request], ids=["update", "request"])
async def test_a_cancel_while_the_saga_resolves_a_committed_2pc_undoes_every_effect(
    cancel, saga, product, engine, client, provider_admin, provider_client
):
    since = datetime.now(UTC) - timedelta(seconds=5)
    sku = await product(stock=5, price=1000)
    customer = await factories.insert_wallet(engine, balance=1000)
    capture_down = {"status": 503, "path_contains": "/capture"}
    assert (await provider_admin.post("/admin/faults", json=capture_down)).status_code == 201
    handle = await saga([(sku, 2)], customer_id=customer, store_credit=800)
    order_id = handle.id.removeprefix("order-")
    # COMMIT logged, stock and credit committed; the coordinator retries the capture.
    await eventually(lambda: factories.decision_of(engine, order_id), lambda d: d is not None)
    assert (await factories.decision_of(engine, order_id)).decision == "COMMIT"
    await eventually(lambda: factories.prepared_branches(engine, order_id), lambda b: b == [])

    await client.get_workflow_handle(coordinator_workflow_id(order_id)).terminate(
        "operator: coordinator stuck on the capture"
    )
    await eventually(lambda: resolution_retrying(handle), bool, deadline_s=30)
    await cancel(handle)
    await provider_admin.delete("/admin/faults")

    with pytest.raises(WorkflowFailureError) as ended:
        await asyncio.wait_for(handle.result(), 90)
    assert isinstance(ended.value.cause, ApplicationError | CancelledError)
    state: SagaState = await handle.query("state", result_type=SagaState)
    assert state.status == "CANCELLED"
    assert state.compensations == [
        "refund_payment",
        "refund_store_credit",
        "release_stock",
        "cancel_order",
    ]
    assert (await factories.decision_of(engine, order_id)).completed_at is not None
    assert await factories.stock_of(engine, sku) == 5
    assert await factories.balance_of(engine, customer) == 1000
    [payment] = await factories.payments_of(engine, order_id)
    assert (payment.status, payment.refunded_amount) == ("REFUNDED", 1200)
    books = (await provider_admin.get("/v1/payments", params={"order_id": order_id})).json()
    assert [(a["status"], a["amount_refunded"]) for a in books["authorizations"]] == [
        ("refunded", 1200)
    ]
    scope = Scope(since=since, grace=timedelta(hours=1))
    found = await run_audit(engine, scope, provider_client, read_model=False)
    assert [v for v in found if v.subject in (order_id, customer, sku)] == []
