"""New sagas take the fraud check (behind workflow.patched) before any stock or money moves."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from domain.order_saga import SagaState
from history_corpus.steps import patches_of, steps_of
from tests import factories
from tests.conftest import start_saga
from workflows.order_saga import FRAUD_CHECK


async def test_a_new_saga_records_the_patch_and_checks_before_reserving(saga, product):
    handle = await saga([(await product(), 1)])
    await handle.result()

    history = await handle.fetch_history()
    scheduled = steps_of(history)
    markers = patches_of(history)
    assert scheduled[:3] == ["create_order", "check_fraud", "reserve_stock"]
    assert [m for m in markers if FRAUD_CHECK in m] == [
        '{"id":"fraud-check-before-payment","deprecated":false}'
    ]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"fraud_max_order_total": 1500}, "above the 1500"),
        ({"fraud_max_orders_per_minute": 0}, "orders in the last minute"),
    ],
)
async def test_a_suspect_order_is_refused_before_stock_or_money_moves(
    client, custom_worker, product, engine, provider_admin, overrides, reason
):
    queue = await custom_worker(**overrides)
    sku = await product(stock=5, price=1000)
    handle = await start_saga(client, queue, [(sku, 2)])

    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()

    assert isinstance(failed.value.cause, ApplicationError)
    assert failed.value.cause.type == "FraudSuspected"
    assert reason in failed.value.cause.message
    state = await handle.query("state", result_type=SagaState)
    assert (state.status, state.steps, state.compensations) == (
        "CANCELLED",
        ["create_order"],
        ["cancel_order"],
    )
    assert await factories.stock_of(engine, sku) == 5
    assert await factories.reservations_of(engine, state.order_id) == []
    books = (await provider_admin.get("/v1/payments", params={"order_id": state.order_id})).json()
    assert books["authorizations"] == []
