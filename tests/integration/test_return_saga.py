"""The return saga on the real servers: what each service's schema holds after it,
what the payment simulator refunded, and what the wallet was credited."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from db.tables import return_refunds
from domain.returns import ReturnState
from tests import factories
from tests.returns import (
    receipts_of,
    refunds_of,
    restocks_of,
    return_of,
    start_return,
)

pytestmark = pytest.mark.asyncio


async def failure_of(handle: Any) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def provider_refunds(provider_admin: Any, order_id: str) -> list[int]:
    held = (await provider_admin.get("/v1/payments", params={"order_id": order_id})).json()
    return [int(r["amount"]) for r in held["refunds"]]


async def confirmed_order(saga: Any, items: list[tuple[str, int]], **options: Any) -> Any:
    state = await (await saga(items, **options)).result()
    assert state.status == "CONFIRMED", state
    return state


async def test_returns_restock_and_refund_card_and_wallet_in_proportion(
    saga, client, settings, product, engine, provider_admin
):
    sku = await product(stock=10, price=1000)
    customer = await factories.insert_wallet(engine, 1000)
    # 4000 paid: 1000 from the wallet, 3000 by card (the two-phase settlement).
    order = await confirmed_order(saga, [(sku, 4)], customer_id=customer, store_credit=1000)
    assert await factories.balance_of(engine, customer) == 0

    first = await start_return(client, settings.task_queue, order.order_id, customer, [(sku, 3)])
    state: ReturnState = await first.result()

    assert state.status == "CONFIRMED"
    assert state.steps == [
        "open_return",
        "receive_return",
        "restock_return",
        "refund_return_card",
        "credit_return_wallet",
        "close_return",
    ]
    row = await return_of(engine, state.return_id)
    assert (row.status, row.value, row.card_refunded, row.store_credit_refunded) == (
        "CLOSED",
        3000,
        2250,
        750,
    )
    assert await factories.stock_of(engine, sku) == 6 + 3
    assert [(r.sku, r.quantity, r.status) for r in await restocks_of(engine, state.return_id)] == [
        (sku, 3, "RESTOCKED")
    ]
    assert [r.status for r in await receipts_of(engine, state.return_id)] == ["RECEIVED"]
    assert await provider_refunds(provider_admin, order.order_id) == [2250]
    assert await factories.balance_of(engine, customer) == 750
    (payment,) = await factories.payments_of(engine, order.order_id)
    assert payment.refunded_amount == 2250

    # The last unit: the two returns together give back exactly what each side paid.
    last = await start_return(client, settings.task_queue, order.order_id, customer, [(sku, 1)])
    assert (await last.result()).status == "CONFIRMED"
    assert await provider_refunds(provider_admin, order.order_id) == [2250, 750]
    assert await factories.balance_of(engine, customer) == 1000
    assert await factories.stock_of(engine, sku) == 10


async def test_returns_write_their_events_under_the_order(saga, client, settings, product, engine):
    sku = await product(stock=10, price=500)
    customer = factories.customer()
    order = await confirmed_order(saga, [(sku, 2)], customer_id=customer)

    handle = await start_return(client, settings.task_queue, order.order_id, customer, [(sku, 2)])
    await handle.result()

    events = await factories.events_of(engine, order.order_id)
    assert events[-5:] == [
        "ReturnOpened",
        "ReturnReceived",
        "StockRestocked",
        "ReturnCardRefunded",
        "ReturnClosed",
    ], events
    # Card-only: nothing due to the wallet, so no wallet event.
    refund = (await refunds_of(engine, handle.id.removeprefix("return-")))[0]
    assert (refund.card_amount, refund.store_credit_amount, refund.wallet_entry_id) == (
        1000,
        0,
        None,
    )


async def test_returning_more_than_is_left_is_refused_with_nothing_written(
    saga, client, settings, product, engine
):
    sku = await product(stock=10, price=500)
    customer = factories.customer()
    order = await confirmed_order(saga, [(sku, 2)], customer_id=customer)
    first = await start_return(client, settings.task_queue, order.order_id, customer, [(sku, 2)])
    await first.result()
    stock = await factories.stock_of(engine, sku)

    again = await start_return(client, settings.task_queue, order.order_id, customer, [(sku, 1)])

    refused = await failure_of(again)
    assert refused.type == "ReturnExceedsOrder"
    assert "0 of the 2 bought are left" in refused.message
    return_id = again.id.removeprefix("return-")
    assert await return_of(engine, return_id) is None
    assert await restocks_of(engine, return_id) == []
    assert await receipts_of(engine, return_id) == []
    assert await factories.stock_of(engine, sku) == stock


async def test_a_return_of_an_unconfirmed_order_is_refused(saga, client, settings, product, engine):
    sku = await product(stock=10, price=500)
    customer = factories.customer()
    declined = await saga([(sku, 1)], payment_token="tok_decline", customer_id=customer)
    with pytest.raises(WorkflowFailureError):
        await declined.result()
    order_id = declined.id.removeprefix("order-")

    handle = await start_return(client, settings.task_queue, order_id, customer, [(sku, 1)])

    assert (await failure_of(handle)).type == "OrderNotReturnable"
    assert await return_of(engine, handle.id.removeprefix("return-")) is None


async def test_a_refused_card_refund_undoes_the_return_in_reverse(
    saga, client, settings, product, engine, provider_admin
):
    sku = await product(stock=10, price=800)
    customer = factories.customer()
    order = await confirmed_order(saga, [(sku, 3)], customer_id=customer)
    stock = await factories.stock_of(engine, sku)
    fault = {"status": 409, "count": 1, "path_contains": "/v1/refunds"}
    assert (await provider_admin.post("/admin/faults", json=fault)).status_code == 201

    handle = await start_return(client, settings.task_queue, order.order_id, customer, [(sku, 2)])

    refused = await failure_of(handle)
    assert refused.type == "PaymentRejected"
    return_id = handle.id.removeprefix("return-")
    row = await return_of(engine, return_id)
    assert row.status == "CANCELLED"
    assert list(row.compensations) == ["unstock_return", "reject_return_receipt", "cancel_return"]
    assert await factories.stock_of(engine, sku) == stock
    assert [r.status for r in await restocks_of(engine, return_id)] == ["REVERSED"]
    assert [r.status for r in await receipts_of(engine, return_id)] == ["REJECTED"]
    assert await refunds_of(engine, return_id) == []
    assert await provider_refunds(provider_admin, order.order_id) == []
    (payment,) = await factories.payments_of(engine, order.order_id)
    assert payment.refunded_amount == 0
    # Undone, the return no longer counts: the same units may be returned again.
    again = await start_return(client, settings.task_queue, order.order_id, customer, [(sku, 3)])
    assert (await again.result()).status == "CONFIRMED"


async def test_a_refund_whose_answer_was_lost_is_recorded_as_the_provider_made_it(
    saga, client, settings, product, engine, provider_admin
):
    """Between the lost answer and the retry another return of the order commits, so the
    card's share counted anew differs (67, not 66); the provider refuses the key reused
    with another amount, which must not undo a return whose money already moved."""
    sku = await product(stock=10, price=100)
    customer = await factories.insert_wallet(engine, 100)
    # 300: 100 from the wallet, 200 by card; a return worth 100 is 66 by card first.
    order = await confirmed_order(saga, [(sku, 3)], customer_id=customer, store_credit=100)
    lost = {"mode": "lose_answer", "seconds": 2, "count": 1, "path_contains": "/v1/refunds"}
    assert (await provider_admin.post("/admin/faults", json=lost)).status_code == 201
    other = f"other-{uuid.uuid4().hex[:8]}"
    try:
        handle = await start_return(
            client, settings.task_queue, order.order_id, customer, [(sku, 1)]
        )
        # Refunded at the provider, its answer held: now the other return commits.
        await factories.eventually(
            lambda: provider_refunds(provider_admin, order.order_id), lambda r: r == [66]
        )
        async with engine.begin() as conn:
            await conn.execute(
                return_refunds.insert().values(
                    return_id=other,
                    order_id=order.order_id,
                    customer_id=customer,
                    value=100,
                    card_amount=0,
                    store_credit_amount=100,
                )
            )
        state: ReturnState = await handle.result()
        row = await return_of(engine, state.return_id)
        assert (row.status, row.card_refunded, row.store_credit_refunded) == ("CLOSED", 66, 34)
        assert await provider_refunds(provider_admin, order.order_id) == [66]
        (payment,) = await factories.payments_of(engine, order.order_id)
        assert payment.refunded_amount == 66
    finally:
        async with engine.begin() as conn:
            await conn.execute(return_refunds.delete().where(return_refunds.c.return_id == other))
