"""Local steps share the workflow worker, each service within its own limit;
and a worker that stops while one retries hands the saga on.

A stalled inventory database (its idempotency table locked, so every inventory
step waits on its first insert) holds at most inventory's share of the
worker's local activity slots: the orders service's steps of new sagas still
run at once, and no more inventory steps reach the database than its limit.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from domain.activities import Act, ReserveStock, StockReserved
from domain.order_saga import SagaState
from history_corpus.steps import step_attempts
from tests import factories
from tests.conftest import start_saga
from wiring.activities import all_activities
from wiring.root import build_workers, running

INVENTORY_LIMIT = 2
# More sagas stalled than the worker has local activity slots in all (2 x 6):
# without the limits their inventory steps would take every one.
STALLED = 14


@pytest.fixture
async def inventory_stalled(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """Inventory's idempotency table locked against writes until the test lets go."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        await conn.execute(text("LOCK TABLE inventory.idempotency_keys IN EXCLUSIVE MODE"))
        try:
            yield conn
        finally:
            if transaction.is_active:
                await transaction.rollback()


async def waiting_on_inventory(engine: AsyncEngine) -> int:
    """Backends waiting for the lock on inventory's idempotency table."""
    async with engine.connect() as conn:
        waiting = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_locks"
                " WHERE NOT granted AND relation = 'inventory.idempotency_keys'::regclass"
            )
        )
    return int(waiting or 0)


async def order_rows(engine: AsyncEngine, order_ids: list[str]) -> int:
    async with engine.connect() as conn:
        found = await conn.scalar(
            text("SELECT count(*) FROM orders.orders WHERE order_id = ANY(:ids)"),
            {"ids": order_ids},
        )
    return int(found or 0)


async def test_a_stalled_inventory_database_fills_only_inventorys_slots(
    client: Client, custom_worker, product, engine, inventory_stalled
):
    # Few slots in all, so that inventory's waiters would take every one of them
    # if its limit did not hold them to their share.
    queue = await custom_worker(
        inventory_max_concurrent_local_steps=INVENTORY_LIMIT,
        orders_max_concurrent_local_steps=2,
        payments_max_concurrent_local_steps=1,
        shipping_max_concurrent_local_steps=1,
    )
    sku = await product(stock=50)
    stalled = [await start_saga(client, queue, [(sku, 1)]) for _ in range(STALLED)]

    async def stuck_at_inventory() -> list[str | None]:
        states = [await h.query("state", result_type=SagaState) for h in stalled]
        return [s.current_step for s in states]

    await factories.eventually(
        stuck_at_inventory, lambda steps: steps == ["reserve_stock"] * STALLED, deadline_s=30
    )
    # The orders service's steps of new sagas run at once beside them.
    started = time.monotonic()
    fresh = [await start_saga(client, queue, [(sku, 2)]) for _ in range(3)]
    fresh_ids = [h.id.removeprefix("order-") for h in fresh]
    await factories.eventually(
        lambda: order_rows(engine, fresh_ids), lambda n: n == 3, deadline_s=10
    )
    created_s = time.monotonic() - started
    # Never more inventory steps in its database than its limit.
    most = 0
    for _ in range(20):
        most = max(most, await waiting_on_inventory(engine))
        await asyncio.sleep(0.1)
    assert 1 <= most <= INVENTORY_LIMIT, most
    assert created_s < 8, f"the orders service waited {created_s:.1f} s behind inventory"

    await inventory_stalled.rollback()
    states = [await h.result() for h in stalled + fresh]
    assert [s.status for s in states] == ["CONFIRMED"] * (STALLED + 3)
    assert await factories.stock_of(engine, sku) == 50 - STALLED - 6


async def test_a_worker_stops_while_a_local_step_retries_and_the_next_one_finishes_it(
    client: Client, product, engine, settings, provider_client
):
    """A deploy while a database is failing: the stopping worker does not wait out
    the step's retries (past the local retry threshold they are durable timers),
    and the saga goes on, once, on the worker that replaces it."""
    failing = asyncio.Event()

    @activity.defn(name=Act.RESERVE_STOCK)
    async def reserve_stock(cmd: ReserveStock) -> StockReserved:
        failing.set()
        raise ApplicationError("inventory database unreachable")  # retryable

    queue = f"deploy-{uuid.uuid4().hex[:8]}"
    real = all_activities(engine, settings, provider_client)
    sku = await product(stock=10)
    async with running(build_workers(client, queue, {**real, Act.RESERVE_STOCK: reserve_stock})):
        handle = await start_saga(client, queue, [(sku, 2)])
        await asyncio.wait_for(failing.wait(), timeout=20)
        stopping = time.monotonic()
    stopped_s = time.monotonic() - stopping
    assert stopped_s < 12, f"the worker took {stopped_s:.1f} s to stop"

    async with running(build_workers(client, queue, real)):
        state: SagaState = await asyncio.wait_for(handle.result(), timeout=60)

    assert state.status == "CONFIRMED"
    assert await factories.stock_of(engine, sku) == 8
    assert len(await factories.reservations_of(engine, state.order_id)) == 1
    attempts = [
        n for name, n in step_attempts(await handle.fetch_history()) if name == "reserve_stock"
    ]
    assert max(attempts) >= 2
