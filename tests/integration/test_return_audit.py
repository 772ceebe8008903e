"""The audit of returns: returns of every ending pass it; damage behind them is found."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowFailureError

from audit import Scope, run_audit
from tests import factories
from tests.integration.test_audit import about, db_now, execute
from tests.returns import start_return

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def returned(saga, client, settings, product, engine, provider_admin):
    """Orders with returns: closed (card and wallet), closed (card), undone (refund refused)."""
    since = await db_now(engine)
    sku = await product(stock=20, price=1000)
    rich = await factories.insert_wallet(engine, 1500)
    orders = {
        "two_phase": await (await saga([(sku, 2)], customer_id=rich, store_credit=500)).result(),
        "card": await (await saga([(sku, 2)])).result(),
        "undone": await (await saga([(sku, 2)])).result(),
    }
    queue = settings.task_queue
    for name in ("two_phase", "card"):
        order = orders[name]
        await (
            await start_return(client, queue, order.order_id, order.customer_id, [(sku, 1)])
        ).result()
    fault = {"status": 409, "count": 1, "path_contains": "/v1/refunds"}
    assert (await provider_admin.post("/admin/faults", json=fault)).status_code == 201
    undone = orders["undone"]
    handle = await start_return(client, queue, undone.order_id, undone.customer_id, [(sku, 2)])
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    scope = Scope(since=since - timedelta(seconds=1), grace=timedelta(hours=1))
    return scope, {name: o.order_id for name, o in orders.items()}


async def test_returns_pass_the_audit_and_each_kind_of_damage_is_found(
    returned, engine, provider_client, provider_admin
):
    scope, ids = returned
    mine = set(ids.values())

    clean = await run_audit(engine, scope, provider_client, read_model=False)
    assert about(clean, mine) == set(), [v for v in clean if v.subject in mine]

    await execute(
        engine,
        "UPDATE payments.return_refunds SET wallet_entry_id = NULL WHERE order_id = :o",
        o=ids["two_phase"],
    )
    await execute(
        engine,
        "UPDATE orders.return_lines SET quantity = 3 WHERE return_id IN"
        " (SELECT return_id FROM orders.returns WHERE order_id = :o)",
        o=ids["card"],
    )
    await execute(
        engine,
        "UPDATE inventory.restocks SET status = 'RESTOCKED' WHERE order_id = :o",
        o=ids["undone"],
    )
    # A second refund of a return, at the provider, under a key of its own.
    books = (await provider_admin.get("/v1/payments", params={"order_id": ids["card"]})).json()
    (auth,) = books["authorizations"]
    again = await provider_admin.post(
        "/v1/refunds",
        json={"authorization_id": auth["id"], "amount": 100},
        headers={"Idempotency-Key": f"by-hand-{auth['id']}"},
    )
    assert again.status_code in (200, 201), again.text

    found = await run_audit(engine, scope, provider_client, read_model=False)

    assert about(found, mine) >= {
        ("return-refund", ids["two_phase"]),
        ("return-exceeds-order", ids["card"]),
        ("return-restock", ids["card"]),
        ("provider-return-refund", ids["card"]),
        ("return-restock", ids["undone"]),
    }, [v for v in found if v.subject in mine]
