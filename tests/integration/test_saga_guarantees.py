"""Saga promises that no constraint or replay check stands in for.

A step whose transaction committed but whose answer never arrived is still
undone; an order whose row was closed under the saga is never reported
confirmed; an order cancelled before its first step committed is recorded as
cancelled all the same.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import update
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from db.tables import orders
from domain.activities import (
    Act,
    ChargePayment,
    CreateOrder,
    CreateShipment,
    PricedOrder,
    ReserveStock,
)
from domain.order_saga import SagaState
from domain.saga import CancelRequest
from tests import factories
from tests.integration.test_order_saga import order_row
from wiring.activities import all_activities

pytestmark = pytest.mark.asyncio


def committed_then_lost(real: Any, name: str, model: type) -> Any:
    """The real step, whose answer is then lost for good (a refusal after commit)."""

    async def lost(cmd: Any) -> Any:
        await real(cmd)
        raise ApplicationError("the answer was lost", type="AnswerLost", non_retryable=True)

    lost.__annotations__ = {"cmd": model, "return": Any}  # how Temporal decodes the input
    return activity.defn(name=name)(lost)


@pytest.mark.parametrize(
    ("step", "model", "undo", "payments"),
    [
        (Act.RESERVE_STOCK, ReserveStock, "release_stock", []),
        (Act.CHARGE_PAYMENT, ChargePayment, "refund_payment", ["REFUNDED"]),
    ],
)
async def test_a_step_that_committed_but_was_reported_failed_is_still_undone(
    step, model, undo, payments, saga, product, engine, settings, provider_client, custom_worker
):
    real = all_activities(engine, settings, provider_client)[step]
    queue = await custom_worker({step: committed_then_lost(real, step, model)})
    sku = await product(stock=10, price=700)
    handle = await saga([(sku, 3)], task_queue=queue)

    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()

    assert isinstance(failed.value.cause, ApplicationError)
    assert failed.value.cause.type == "AnswerLost"
    state: SagaState = await handle.query("state", result_type=SagaState)
    assert undo in state.compensations, state.compensations
    assert await factories.stock_of(engine, sku) == 10
    assert [r.status for r in await factories.reservations_of(engine, state.order_id)] == [
        "RELEASED"
    ]
    assert [p.status for p in await factories.payments_of(engine, state.order_id)] == payments


def closing_the_order_first(real: Any, engine: Any) -> Any:
    """Shipping as usual, but the order row was closed meanwhile (an operator, a reset)."""

    @activity.defn(name=Act.CREATE_SHIPMENT)
    async def ship(cmd: CreateShipment) -> Any:
        async with engine.begin() as conn:
            await conn.execute(
                update(orders)
                .where(orders.c.order_id == cmd.order_id)
                .values(status="CANCELLED", failure_reason="closed by an operator")
            )
        return await real(cmd)

    return ship


async def test_an_order_closed_under_the_saga_is_never_reported_confirmed(
    saga, product, engine, settings, provider_client, custom_worker
):
    real = all_activities(engine, settings, provider_client)[Act.CREATE_SHIPMENT]
    queue = await custom_worker({Act.CREATE_SHIPMENT: closing_the_order_first(real, engine)})
    sku = await product(stock=10, price=500)
    handle = await saga([(sku, 2)], task_queue=queue)

    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()

    assert isinstance(failed.value.cause, ApplicationError)
    assert failed.value.cause.type == "OrderClosed"
    state: SagaState = await handle.query("state", result_type=SagaState)
    assert state.status == "CANCELLED"
    assert (await order_row(engine, state.order_id)).status == "CANCELLED"
    assert "OrderConfirmed" not in await factories.events_of(engine, state.order_id)
    assert await factories.stock_of(engine, sku) == 10


def create_order_unreachable(attempted: asyncio.Event) -> Any:
    """The orders database unreachable: create_order never commits, it only retries."""

    @activity.defn(name=Act.CREATE_ORDER)
    async def unreachable(cmd: CreateOrder) -> PricedOrder:
        attempted.set()
        raise RuntimeError("orders database unreachable")

    return unreachable


async def test_an_order_cancelled_before_it_was_created_still_ends_with_a_record(
    saga, product, engine, custom_worker
):
    attempted = asyncio.Event()
    queue = await custom_worker({Act.CREATE_ORDER: create_order_unreachable(attempted)})
    sku = await product(stock=5)
    customer = factories.customer()
    handle = await saga([(sku, 1)], task_queue=queue, customer_id=customer, request_hash="f" * 64)
    await asyncio.wait_for(attempted.wait(), 20)

    await handle.execute_update("cancel", CancelRequest(reason="changed my mind"))
    with pytest.raises(WorkflowFailureError):
        await handle.result()

    # The client was told CANCELLED: PostgreSQL says so too, once the saga is gone.
    state: SagaState = await handle.query("state", result_type=SagaState)
    row = await order_row(engine, state.order_id)
    assert row is not None, "the cancelled order left no record"
    assert (row.status, row.customer_id, row.total) == ("CANCELLED", customer, 0)
    assert (row.failure_reason, row.workflow_id) == ("changed my mind", handle.id)
    # The request's fingerprint: the same POST repeated is answered, not refused as a reuse.
    assert row.request_hash == "f" * 64
    assert await factories.stock_of(engine, sku) == 5
