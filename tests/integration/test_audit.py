"""The audit: real sagas of every ending pass it; each kind of damage done behind them is found.

The test database holds other tests' debris (sagas terminated mid-flight on
purpose), so the audit is scoped to orders created during this test and its
findings are read for this test's orders and customers.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from audit import Scope, Violation, run_audit
from choreography import orders as choreographed
from domain.activities import Act, CreateShipment, ShipmentCreated
from domain.errors import ErrorType
from domain.orders import OrderLine, PlaceOrder
from domain.returns import ReturnLine, StartReturn
from domain.two_phase import BranchCall, branch_gid
from stack.cli import main
from tests import card_stand_ins, factories
from tests.card_stand_ins import DiesAfterAuthorizing, WorkerDied
from tests.conftest import start_saga

pytestmark = pytest.mark.timeout(120)


@activity.defn(name=Act.CREATE_SHIPMENT)
async def shipping_refuses(cmd: CreateShipment) -> ShipmentCreated:
    raise ApplicationError("no carrier", type=ErrorType.SHIPPING_REFUSED, non_retryable=True)


async def db_now(engine: AsyncEngine) -> datetime:
    async with engine.connect() as conn:
        now: datetime = await conn.scalar(text("SELECT now()"))
        return now


async def execute(engine, sql: str, **params) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(sql), params)


def about(found: list[Violation], subjects: set[str]) -> set[tuple[str, str]]:
    return {(v.check, v.subject) for v in found if v.subject in subjects}


@pytest.fixture
async def endings(client, settings, worker, custom_worker, product, engine):
    """One order of every ending, run by the real workers; returns their ids."""
    since = await db_now(engine)
    refusing = await custom_worker({Act.CREATE_SHIPMENT: shipping_refuses})
    sku, scarce = await product(stock=20, price=1000), await product(stock=0)
    rich = await factories.insert_wallet(engine, balance=1500)
    poor = await factories.insert_wallet(engine, balance=100)
    queue = settings.task_queue
    handles = {
        "confirmed": await start_saga(client, queue, [(sku, 2)]),
        "declined": await start_saga(client, queue, [(sku, 1)], payment_token="tok_decline"),
        "out_of_stock": await start_saga(client, queue, [(scarce, 1)]),
        "shipping_refused": await start_saga(client, refusing, [(sku, 1)]),
        "two_phase": await start_saga(
            client, queue, [(sku, 1)], customer_id=rich, store_credit=600
        ),
        "two_phase_aborted": await start_saga(
            client, queue, [(sku, 1)], customer_id=poor, store_credit=600
        ),
    }
    for handle in handles.values():
        with contextlib.suppress(WorkflowFailureError):
            await handle.result()
    ids = {name: h.id.removeprefix("order-") for name, h in handles.items()}
    return since, ids, {"rich": rich, "poor": poor}, sku


async def test_every_ending_passes_and_each_kind_of_damage_is_found(
    endings, engine, provider_client, provider_admin
):
    since, ids, wallets, sku = endings
    scope = Scope(since=since - timedelta(seconds=1), grace=timedelta(hours=1))
    mine = set(ids.values()) | set(wallets.values()) | {sku}

    clean = await run_audit(engine, scope, provider_client)
    assert about(clean, mine) == set(), [v for v in clean if v.subject in mine]

    # Damage behind the sagas' backs, one kind each.
    await execute(
        engine,
        "UPDATE inventory.reservations SET status = 'RELEASED' WHERE order_id = :o",
        o=ids["confirmed"],
    )
    await execute(
        engine,
        "UPDATE shipping.shipments SET status = 'CANCELLED' WHERE order_id = :o",
        o=ids["two_phase"],
    )
    await execute(
        engine,
        "UPDATE payments.payments SET status = 'CAPTURED', refunded_amount = 0 WHERE order_id = :o",
        o=ids["shipping_refused"],
    )
    await execute(
        engine,
        "UPDATE payments.wallets SET balance = balance + 1 WHERE customer_id = :c",
        c=wallets["rich"],
    )
    await execute(
        engine,
        "UPDATE orders.outbox SET status = 'FAILED', last_error = 'too large'"
        " WHERE aggregate_id = :o",
        o=ids["two_phase_aborted"],
    )
    # A top-up's event, which belongs to no order, given up on by the relay.
    await execute(
        engine,
        "INSERT INTO payments.outbox (event_id, aggregate_type, aggregate_id, event_type,"
        " payload, status, last_error) VALUES (gen_random_uuid(), 'wallet', :c,"
        " 'WalletCredited', '{}', 'FAILED', 'too large')",
        c=wallets["poor"],
    )
    # A charge the provider applied after the saga had given up on it.
    body = {
        "order_id": ids["declined"],
        "amount": 999,
        "currency": "EUR",
        "payment_token": "tok_visa",
    }
    late = await provider_admin.post("/v1/authorizations", json=body)
    assert late.status_code == 201

    found = await run_audit(engine, scope, provider_client)

    assert about(found, mine) == {
        ("confirmed-stock", ids["confirmed"]),
        # The released reservation gave no units back: the product no longer adds up.
        ("stock-conservation", sku),
        ("confirmed-shipment", ids["two_phase"]),
        ("cancelled-money", ids["shipping_refused"]),
        ("wallet-ledger", wallets["rich"]),
        ("provider-money", ids["declined"]),
        ("unpublished-event", ids["two_phase_aborted"]),
        ("unpublished-event", wallets["poor"]),
    }
    shown = "\n".join(str(v) for v in found)
    assert f"provider-money: {ids['declined']}: cancelled, but" in shown


async def test_the_cli_lists_violations_and_exits_1(endings, engine, settings, monkeypatch, capsys):
    _since, ids, _, _ = endings
    # A parcel sent for an order that was cancelled.
    await execute(
        engine,
        "INSERT INTO shipping.shipments (shipment_id, order_id, customer_id, tracking_number,"
        " status) VALUES (gen_random_uuid(), :o, 'c', :t, 'CREATED')",
        o=ids["declined"],
        t=f"TRK-{ids['declined'][:8]}",
    )
    monkeypatch.setenv("DATABASE_URL", settings.database_target)

    code = await asyncio.to_thread(
        main, ["audit", "--hours", "1", "--no-provider", "--no-temporal", "--no-read-model"]
    )

    out = capsys.readouterr().out
    assert code == 1
    assert f"cancelled-shipment: {ids['declined']}: shipment TRK-" in out
    assert "violation(s)" in out.splitlines()[-1]


async def test_stock_taken_behind_the_sagas_backs_breaks_conservation(engine, product):
    sku = await product(stock=10)
    mine = {sku}
    assert about(await run_audit(engine, Scope(), read_model=False), mine) == set()

    await execute(engine, "UPDATE inventory.products SET stock = stock - 1 WHERE sku = :s", s=sku)

    found = await run_audit(engine, Scope(), read_model=False)
    assert about(found, mine) == {("stock-conservation", sku)}
    assert f"stock-conservation: {sku}: received 10, reserved 0, but stock is 9" in map(str, found)


async def test_a_published_event_missing_from_the_read_model_is_found(endings, engine):
    since, ids, _, _ = endings
    scope = Scope(since=since - timedelta(seconds=1), grace=timedelta(minutes=5))
    order = ids["confirmed"]
    # As if the relay had published it long ago and no consumer ever projected it.
    await execute(
        engine,
        "UPDATE orders.outbox SET status = 'PUBLISHED', published_at = now() - interval '1 hour'"
        " WHERE aggregate_id = :o AND event_type = 'OrderConfirmed'",
        o=order,
    )
    missing = await run_audit(engine, scope)
    assert about(missing, {order}) == {("read-model", order)}

    await execute(
        engine,
        "INSERT INTO readmodels.order_history (event_id, order_id, source, aggregate_type,"
        " event_type, payload, occurred_at) SELECT event_id, aggregate_id, 'orders',"
        " aggregate_type, event_type, payload, created_at FROM orders.outbox"
        " WHERE aggregate_id = :o AND event_type = 'OrderConfirmed'",
        o=order,
    )
    assert about(await run_audit(engine, scope), {order}) == set()


async def _orphan_order(client) -> WorkflowHandle[Any, Any]:
    handle: WorkflowHandle[Any, Any] = await start_saga(
        client, f"nobody-{uuid.uuid4().hex[:8]}", [("NONE", 1)]
    )
    return handle


async def _orphan_return(client) -> WorkflowHandle[Any, Any]:
    """A refund left hanging is as much an operator's business as an order."""
    request = StartReturn(
        return_id=str(uuid.uuid4()),
        order_id=str(uuid.uuid4()),
        customer_id="c",
        lines=[ReturnLine(sku="sku", quantity=1)],
    )
    handle: WorkflowHandle[Any, Any] = await client.start_workflow(
        "ReturnSaga",
        request,
        id=f"return-{request.return_id}",
        task_queue=f"nobody-{uuid.uuid4().hex[:8]}",  # no worker: it never moves
    )
    return handle


@pytest.mark.parametrize(
    ("saga_type", "orphan_of"), [("OrderSaga", _orphan_order), ("ReturnSaga", _orphan_return)]
)
async def test_a_saga_silent_past_the_grace_is_stuck(client, engine, saga_type, orphan_of):
    since = datetime.now(UTC) - timedelta(seconds=1)
    orphan = await orphan_of(client)
    try:
        await asyncio.sleep(3)
        scope = Scope(since=since, grace=timedelta(seconds=2))
        found = await run_audit(engine, scope, temporal=client, read_model=False)
        stuck = [v for v in found if v.check == "stuck-saga"]
        assert [v.subject for v in stuck] == [orphan.id]
        assert f"{saga_type} open since" in stuck[0].detail

        # With a grace longer than its silence it is merely slow.
        patient = Scope(since=since, grace=timedelta(minutes=1))
        found = await run_audit(engine, patient, temporal=client, read_model=False)
        assert [v for v in found if v.check == "stuck-saga"] == []
    finally:
        await orphan.terminate("test over")


async def test_a_choreographed_order_left_open_past_its_deadline_is_overdue(engine, product):
    """No orders service sweeps here, as when none runs: the audit says so."""
    sku = await product(stock=3)
    order = PlaceOrder(
        order_id=str(uuid.uuid4()),
        customer_id=factories.customer(),
        items=[OrderLine(sku=sku, quantity=1)],
        payment_token="tok_visa",
    )
    since = await db_now(engine)
    await choreographed.place(engine, order, since - timedelta(minutes=5))

    found = await run_audit(engine, Scope(since=since, grace=timedelta(minutes=1)))

    assert about(found, {order.order_id}) == {("overdue-order", order.order_id)}
    [overdue] = [v for v in found if v.subject == order.order_id]
    assert "past its deadline: is the orders service's timeout sweep running?" in overdue.detail
    assert (
        about(
            await run_audit(engine, Scope(since=since, grace=timedelta(minutes=10))),
            {order.order_id},
        )
        == set()
    )


async def test_a_card_try_cut_short_past_the_grace_is_an_open_hold(
    engine, settings, provider_client, card
):
    tx_id = str(uuid.uuid4())
    call = BranchCall(
        tx_id=tx_id,
        gid=branch_gid(tx_id, "card"),
        payload={
            "order_id": tx_id,
            "customer_id": factories.customer(),
            "amount": 300,
            "currency": "EUR",
            "payment_token": "tok_visa",
        },
    )
    dying = card_stand_ins.participant(DiesAfterAuthorizing, engine, settings, provider_client)
    with pytest.raises(WorkerDied):
        await dying.try_card_hold(call)  # authorized at the provider, the row still TRYING
    await execute(
        engine,
        "UPDATE payments.card_holds SET created_at = created_at - interval '2 hours'"
        " WHERE tx_id = :t",
        t=tx_id,
    )

    found = await run_audit(engine, Scope(grace=timedelta(hours=1)), read_model=False)

    assert about(found, {tx_id}) == {("open-hold", tx_id)}
    await card.cancel_card_hold(call)  # leave no live authorization behind
