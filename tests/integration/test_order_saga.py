"""The order saga on the real servers: outcomes read from PostgreSQL and from Temporal."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, CancelledError

from activities.inventory import InventoryActivities
from activities.orders import OrderActivities
from activities.shipping import ShippingActivities
from db.engine import SessionFactory
from db.tables import orders
from domain.activities import (
    Act,
    CloseOrder,
    CreateShipment,
    OrderClosed,
    ReserveStock,
    ShipmentCreated,
    StockReserved,
)
from domain.order_saga import SagaState
from domain.saga import CancelRequest
from history_corpus.steps import step_attempts
from tests import factories
from tests.factories import eventually

pytestmark = pytest.mark.asyncio


async def order_row(engine: AsyncEngine, order_id: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(orders).where(orders.c.order_id == order_id))).first()


async def failure_of(handle: Any) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def test_happy_path_confirms_and_applies_every_effect_once(saga, product, engine):
    sku_a, sku_b = await product(stock=50, price=1250), await product(stock=5, price=300)
    handle = await saga([(sku_a, 2), (sku_b, 5)])

    state: SagaState = await handle.result()

    order_id = state.order_id
    assert state.status == "CONFIRMED"
    assert state.total == 2 * 1250 + 5 * 300
    assert state.steps == [
        "create_order",
        "check_fraud",
        "reserve_stock",
        "charge_payment",
        "create_shipment",
        "confirm_order",
    ]
    assert state.compensations == []
    row = await order_row(engine, order_id)
    assert (row.status, row.total, row.currency) == ("CONFIRMED", 4000, "EUR")
    assert await factories.stock_of(engine, sku_a) == 48
    assert await factories.stock_of(engine, sku_b) == 0
    await factories.check_confirmed_effects(engine, order_id, amount=4000)


async def test_out_of_stock_cancels_the_order_and_touches_nothing_else(saga, product, engine):
    sku = await product(stock=1)
    handle = await saga([(sku, 2)])

    error = await failure_of(handle)

    assert error.type == "OutOfStock"
    state: SagaState = await handle.query("state", result_type=SagaState)
    assert state.status == "CANCELLED"
    assert state.steps == ["create_order", "check_fraud"]
    assert state.compensations == ["cancel_order"]
    row = await order_row(engine, state.order_id)
    assert row.status == "CANCELLED"
    assert "out of stock" in row.failure_reason
    assert row.compensations == ["cancel_order"]
    assert await factories.stock_of(engine, sku) == 1
    assert await factories.reservations_of(engine, state.order_id) == []
    assert await factories.payments_of(engine, state.order_id) == []
    assert await factories.events_of(engine, state.order_id) == ["OrderCreated", "OrderCancelled"]


async def test_declined_payment_releases_stock_and_charges_nothing(saga, product, engine):
    sku = await product(stock=10)
    handle = await saga([(sku, 3)], payment_token="tok_decline")

    error = await failure_of(handle)

    assert error.type == "PaymentDeclined"
    state: SagaState = await handle.query("state", result_type=SagaState)
    assert state.compensations == ["release_stock", "cancel_order"]
    assert (await order_row(engine, state.order_id)).status == "CANCELLED"
    assert await factories.stock_of(engine, sku) == 10
    [reservation] = await factories.reservations_of(engine, state.order_id)
    assert reservation.status == "RELEASED"
    assert await factories.payments_of(engine, state.order_id) == []
    assert await factories.events_of(engine, state.order_id) == [
        "OrderCreated",
        "StockReserved",
        "StockReleased",
        "OrderCancelled",
    ]


@activity.defn(name=Act.CREATE_SHIPMENT)
async def shipping_refuses(cmd: CreateShipment) -> ShipmentCreated:
    raise ApplicationError("carrier refused the parcel", type="ShippingRefused", non_retryable=True)


async def test_shipping_failure_refunds_and_releases_in_reverse(
    saga, product, engine, custom_worker
):
    queue = await custom_worker({Act.CREATE_SHIPMENT: shipping_refuses})
    sku = await product(stock=10, price=700)
    handle = await saga([(sku, 2)], task_queue=queue)

    error = await failure_of(handle)

    assert error.type == "ShippingRefused"
    state: SagaState = await handle.query("state", result_type=SagaState)
    assert state.steps == ["create_order", "check_fraud", "reserve_stock", "charge_payment"]
    assert state.compensations == ["refund_payment", "release_stock", "cancel_order"]
    row = await order_row(engine, state.order_id)
    assert (row.status, row.failure_reason) == ("CANCELLED", "carrier refused the parcel")
    [payment] = await factories.payments_of(engine, state.order_id)
    assert (payment.status, payment.refunded_amount) == ("REFUNDED", 1400)
    assert await factories.stock_of(engine, sku) == 10
    assert await factories.shipments_of(engine, state.order_id) == []


class HeldShipping:
    """A real create_shipment that waits for the test's go before it runs."""

    def __init__(self, sessions: SessionFactory) -> None:
        self.started, self.release = asyncio.Event(), asyncio.Event()
        real = ShippingActivities(sessions)

        @activity.defn(name=Act.CREATE_SHIPMENT)
        async def held(cmd: CreateShipment) -> ShipmentCreated:
            self.started.set()
            await self.release.wait()
            return await real.create_shipment(cmd)

        self.activity = held

    async def wait_started(self) -> None:
        await asyncio.wait_for(self.started.wait(), 20)


async def test_cancel_mid_saga_compensates_what_was_done(
    saga, product, engine, custom_worker, sessions
):
    shipping = HeldShipping(sessions)
    queue = await custom_worker({Act.CREATE_SHIPMENT: shipping.activity})
    sku = await product(stock=10, price=500)
    handle = await saga([(sku, 4)], task_queue=queue)
    await shipping.wait_started()

    await handle.execute_update("cancel", CancelRequest(reason="customer changed their mind"))
    # The step in flight commits after the cancel request: its undo must still run.
    shipping.release.set()

    error = await failure_of(handle)
    assert error.type == "OrderCancelled"
    state: SagaState = await handle.query("state", result_type=SagaState)
    assert state.compensations == [
        "cancel_shipment",
        "refund_payment",
        "release_stock",
        "cancel_order",
    ]
    row = await order_row(engine, state.order_id)
    assert (row.status, row.failure_reason) == ("CANCELLED", "customer changed their mind")
    assert await factories.stock_of(engine, sku) == 10
    [payment] = await factories.payments_of(engine, state.order_id)
    assert payment.status == "REFUNDED"
    [shipment] = await factories.shipments_of(engine, state.order_id)
    assert shipment.status == "CANCELLED"


async def test_temporal_cancel_request_also_compensates(
    saga, product, engine, custom_worker, sessions
):
    shipping = HeldShipping(sessions)
    queue = await custom_worker({Act.CREATE_SHIPMENT: shipping.activity})
    sku = await product(stock=10)
    handle = await saga([(sku, 1)], task_queue=queue)
    await shipping.wait_started()

    await handle.cancel()
    # A local step runs inside the saga's workflow task, and the request is
    # recorded, and heard, when that task ends: here, when the worker
    # heartbeats it (the step takes long). Released sooner, the step would be
    # followed by the point of no return in the same task, and the order
    # confirmed (test_a_cancel_heard_after_the_last_local_step_is_too_late).
    await eventually(lambda: cancel_recorded(handle), bool)
    shipping.release.set()

    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert isinstance(failed.value.cause, CancelledError)
    state: SagaState = await handle.query("state", result_type=SagaState)
    assert state.status == "CANCELLED"
    assert state.failure_reason == "workflow cancelled"
    assert (await order_row(engine, state.order_id)).status == "CANCELLED"
    assert await factories.stock_of(engine, sku) == 10
    [shipment] = await factories.shipments_of(engine, state.order_id)
    assert shipment.status == "CANCELLED"


async def cancel_recorded(handle: WorkflowHandle[Any, Any]) -> bool:
    history = await handle.fetch_history()
    return any(
        e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
        for e in history.events
    )


async def test_a_cancel_heard_after_the_last_local_step_is_too_late(
    saga, product, engine, custom_worker, sessions
):
    """The last local step and the point of no return share a workflow task: a
    Temporal cancel sent while that step runs is recorded after confirm_order
    was scheduled, so it is ignored, as one sent during confirm_order always was."""
    shipping = HeldShipping(sessions)
    queue = await custom_worker({Act.CREATE_SHIPMENT: shipping.activity})
    sku = await product(stock=10)
    handle = await saga([(sku, 1)], task_queue=queue)
    await shipping.wait_started()

    await handle.cancel()
    shipping.release.set()
    state: SagaState = await handle.result()

    assert state.status == "CONFIRMED"
    assert (await order_row(engine, state.order_id)).status == "CONFIRMED"
    assert await factories.stock_of(engine, sku) == 9
    [shipment] = await factories.shipments_of(engine, state.order_id)
    assert shipment.status != "CANCELLED"


def confirm_when(release: asyncio.Event, started: asyncio.Event, sessions: SessionFactory) -> Any:
    real = OrderActivities(sessions)

    @activity.defn(name=Act.CONFIRM_ORDER)
    async def held(cmd: CloseOrder) -> OrderClosed:
        started.set()
        await release.wait()
        return await real.confirm_order(cmd)

    return held


async def test_confirming_order_refuses_cancel_and_ignores_cancel_requests(
    saga, product, engine, custom_worker, sessions
):
    started, release = asyncio.Event(), asyncio.Event()
    queue = await custom_worker({Act.CONFIRM_ORDER: confirm_when(release, started, sessions)})
    sku = await product(stock=10)
    handle = await saga([(sku, 2)], task_queue=queue)
    await asyncio.wait_for(started.wait(), 20)

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update("cancel", CancelRequest())
    await handle.cancel()
    release.set()
    state: SagaState = await handle.result()

    assert isinstance(refused.value.cause, ApplicationError)
    assert refused.value.cause.type == "OrderNotCancellable"
    assert state.status == "CONFIRMED"
    assert state.compensations == []
    assert (await order_row(engine, state.order_id)).status == "CONFIRMED"
    assert await factories.stock_of(engine, sku) == 8


def reserve_then_crash(sessions: SessionFactory) -> Any:
    real = InventoryActivities(sessions)

    @activity.defn(name=Act.RESERVE_STOCK)
    async def flaky(cmd: ReserveStock) -> StockReserved:
        result = await real.reserve_stock(cmd)
        if activity.info().attempt == 1:
            # The transaction is committed; only the reply is lost.
            raise RuntimeError("worker lost its connection after commit")
        return result

    return flaky


async def test_retry_after_commit_applies_the_reservation_once(
    saga, product, engine, custom_worker, sessions
):
    queue = await custom_worker({Act.RESERVE_STOCK: reserve_then_crash(sessions)})
    sku = await product(stock=10)
    handle = await saga([(sku, 3)], task_queue=queue)

    state: SagaState = await handle.result()

    assert state.status == "CONFIRMED"
    assert await factories.stock_of(engine, sku) == 7
    assert len(await factories.reservations_of(engine, state.order_id)) == 1
    events = await factories.events_of(engine, state.order_id)
    assert events.count("StockReserved") == 1
    attempts = step_attempts(await handle.fetch_history())
    assert ("reserve_stock", 2) in attempts


async def test_thirty_orders_for_ten_units_confirm_exactly_ten(saga, product, engine):
    sku = await product(stock=10)
    handles = await asyncio.gather(*(saga([(sku, 1)]) for _ in range(30)))

    outcomes = await asyncio.gather(*(h.result() for h in handles), return_exceptions=True)

    confirmed = [o for o in outcomes if isinstance(o, SagaState)]
    refused = [o for o in outcomes if isinstance(o, WorkflowFailureError)]
    assert len(confirmed) == 10
    assert len(refused) == 20
    assert all(
        isinstance(r.cause, ApplicationError) and r.cause.type == "OutOfStock" for r in refused
    )
    assert await factories.stock_of(engine, sku) == 0
    assert (
        await factories.count(
            engine,
            "SELECT count(*) FROM payments.payments p JOIN inventory.reservations r "
            "ON r.order_id = p.order_id WHERE r.sku = :sku AND p.status = 'CAPTURED'",
            sku=sku,
        )
        == 10
    )


async def test_query_reports_progress_while_running(saga, product, custom_worker, sessions):
    shipping = HeldShipping(sessions)
    queue = await custom_worker({Act.CREATE_SHIPMENT: shipping.activity})
    handle = await saga([(await product(), 1)], task_queue=queue)
    await shipping.wait_started()

    state = await eventually(
        lambda: handle.query("state", result_type=SagaState),
        lambda s: s.current_step == Act.CREATE_SHIPMENT,
    )

    assert state.status == "PENDING"
    assert state.steps == ["create_order", "check_fraud", "reserve_stock", "charge_payment"]
    shipping.release.set()
    assert (await handle.result()).status == "CONFIRMED"
