"""Interleavings that must not leave an order half done."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError

from activities.inventory import InventoryActivities
from db.unit_of_work import StepFenced
from domain.activities import Act, ReleaseStock, ReserveStock, StockReserved
from domain.order_saga import SagaState
from domain.orders import OrderLine
from domain.saga import CancelRequest
from tests import factories
from tests.conftest import start_saga
from wiring.activities import all_activities
from wiring.root import build_workers, running

pytestmark = pytest.mark.asyncio


def keys(order_id: str, step: str) -> dict[str, str]:
    return {
        "idempotency_key": f"order-{order_id}:{step}",
        "order_id": order_id,
        "correlation_id": f"order-{order_id}",
    }


async def test_undo_waits_for_the_step_in_flight_and_undoes_it(sessions, engine, product):
    sku = await product(stock=10)
    order_id = str(uuid.uuid4())
    inventory = InventoryActivities(sessions)
    reserve = ReserveStock(
        **keys(order_id, "reserve_stock"), items=[OrderLine(sku=sku, quantity=3)]
    )
    release = ReleaseStock(**keys(order_id, "release_stock"), fences=reserve.idempotency_key)
    async with engine.connect() as blocker:
        await blocker.begin()
        # Hold the product row: the reservation claims its key, then waits here.
        await blocker.execute(
            text("SELECT 1 FROM inventory.products WHERE sku = :s FOR UPDATE"), {"s": sku}
        )
        reserving = asyncio.create_task(inventory.reserve_stock(reserve))
        await factories.lock_waits(engine, 1)
        releasing = asyncio.create_task(inventory.release_stock(release))
        await factories.lock_waits(engine, 2)
        assert not releasing.done()  # the undo waits for the step it undoes
        await blocker.rollback()

    await reserving
    released = await releasing

    assert released.released_units == 3
    assert await factories.stock_of(engine, sku) == 10
    [reservation] = await factories.reservations_of(engine, order_id)
    assert reservation.status == "RELEASED"


async def test_a_step_arriving_after_its_undo_never_applies(sessions, engine, product):
    sku = await product(stock=10)
    order_id = str(uuid.uuid4())
    inventory = InventoryActivities(sessions)
    reserve = ReserveStock(
        **keys(order_id, "reserve_stock"), items=[OrderLine(sku=sku, quantity=3)]
    )

    undone = await inventory.release_stock(
        ReleaseStock(**keys(order_id, "release_stock"), fences=reserve.idempotency_key)
    )
    with pytest.raises(StepFenced):
        await inventory.reserve_stock(reserve)

    assert undone.released_units == 0
    assert await factories.stock_of(engine, sku) == 10
    assert await factories.reservations_of(engine, order_id) == []


async def test_cancel_sent_before_any_worker_runs_the_saga_is_honoured(
    client: Client, settings, engine, product, provider_client
):
    sku = await product(stock=5)
    queue = f"late-{uuid.uuid4().hex[:8]}"
    handle = await start_saga(client, queue, [(sku, 1)])
    cancelling = asyncio.create_task(
        handle.execute_update("cancel", CancelRequest(reason="changed my mind"))
    )
    await asyncio.sleep(0.5)  # the update waits in the workflow's first task

    activities = all_activities(engine, settings, provider_client)
    async with running(build_workers(client, queue, activities)):
        await cancelling
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()

    assert isinstance(failed.value.cause, ApplicationError)
    assert failed.value.cause.type == "OrderCancelled"
    assert await factories.stock_of(engine, sku) == 5


def reserve_always_failing(failed_once: asyncio.Event) -> object:
    @activity.defn(name=Act.RESERVE_STOCK)
    async def failing(cmd: ReserveStock) -> StockReserved:
        failed_once.set()
        raise RuntimeError("inventory database unreachable")

    return failing


async def test_temporal_cancel_during_retry_backoff_ends_canceled(
    saga, product, engine, custom_worker
):
    failed_once = asyncio.Event()
    queue = await custom_worker({Act.RESERVE_STOCK: reserve_always_failing(failed_once)})
    sku = await product(stock=5)
    handle = await saga([(sku, 1)], task_queue=queue)
    await asyncio.wait_for(failed_once.wait(), 20)

    await handle.cancel()

    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert isinstance(failed.value.cause, CancelledError)
    state: SagaState = await handle.query("state", result_type=SagaState)
    assert (state.status, state.failure_reason) == ("CANCELLED", "workflow cancelled")
    assert await factories.stock_of(engine, sku) == 5


async def test_repeated_cancel_is_accepted_once(saga, product, custom_worker, sessions):
    from tests.integration.test_order_saga import HeldShipping

    shipping = HeldShipping(sessions)
    queue = await custom_worker({Act.CREATE_SHIPMENT: shipping.activity})
    handle = await saga([(await product(), 1)], task_queue=queue)
    await shipping.wait_started()

    first = await handle.execute_update("cancel", CancelRequest(reason="first"))
    second = await handle.execute_update("cancel", CancelRequest(reason="second"))
    shipping.release.set()

    with pytest.raises(WorkflowFailureError):
        await handle.result()
    state: SagaState = await handle.query("state", result_type=SagaState)
    assert first == second
    assert state.failure_reason == "first"
