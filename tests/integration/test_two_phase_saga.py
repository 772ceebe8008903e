"""Orders paid with store credit: stock, wallet and card settle by 2PC, all or nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.store_credit import StoreCreditParticipant
from domain.activities import Act, CreateShipment, ShipmentCreated, TwoPhaseAct
from domain.order_saga import SagaState
from domain.two_phase import BranchAck, BranchCall, TwoPhaseOutcome, coordinator_workflow_id
from history_corpus.steps import step_attempts, steps_of
from temporal_client import replayer
from tests import factories
from tests.factories import eventually

pytestmark = pytest.mark.asyncio


async def refusal_of(handle: Any) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    assert isinstance(failed.value.cause, ApplicationError)
    return failed.value.cause


async def state_of(handle: Any) -> SagaState:
    state: SagaState = await handle.query("state", result_type=SagaState)
    return state


async def provider_authorizations(admin, order_id: str) -> list[tuple[str, int]]:
    held = (await admin.get("/v1/payments", params={"order_id": order_id})).json()
    return [(a["status"], a["amount_captured"]) for a in held["authorizations"]]


async def test_all_yes_commits_stock_credit_and_card_together(
    saga, product, engine, provider_admin
):
    sku = await product(stock=10, price=3000)
    customer = await factories.insert_wallet(engine, balance=5000)

    handle = await saga([(sku, 2)], customer_id=customer, store_credit=4000)
    state: SagaState = await handle.result()

    assert state.status == "CONFIRMED"
    assert state.steps == [
        "create_order",
        "check_fraud",
        "settle_two_phase",
        "create_shipment",
        "confirm_order",
    ]
    assert state.two_phase is not None
    assert state.two_phase.decision == "COMMIT"
    assert state.two_phase.votes == {"stock": "YES", "store_credit": "YES", "card": "YES"}
    assert await factories.stock_of(engine, sku) == 8
    assert await factories.balance_of(engine, customer) == 1000
    assert (await factories.hold_of(engine, state.order_id)).status == "CAPTURED"
    [payment] = await factories.payments_of(engine, state.order_id)
    assert (payment.status, payment.amount) == ("CAPTURED", 2000)
    assert await provider_authorizations(provider_admin, state.order_id) == [("captured", 2000)]
    decision = await factories.decision_of(engine, state.order_id)
    assert (decision.decision, decision.completed_at is not None) == ("COMMIT", True)
    assert await factories.prepared_branches(engine, state.order_id) == []
    events = await factories.events_of(engine, state.order_id)
    assert {"StockReserved", "PaymentCaptured", "OrderConfirmed"} <= set(events)


async def test_order_paid_fully_with_store_credit_has_no_card(saga, product, engine):
    sku = await product(stock=3, price=1000)
    customer = await factories.insert_wallet(engine, balance=1000)

    state: SagaState = await (
        await saga([(sku, 1)], customer_id=customer, store_credit=1000, payment_token="")
    ).result()

    assert state.two_phase is not None
    assert set(state.two_phase.votes) == {"stock", "store_credit"}
    assert await factories.balance_of(engine, customer) == 0
    assert await factories.hold_of(engine, state.order_id) is None


def scheduled_activities(history: Any) -> set[str]:
    """Every activity the history shows run or scheduled, local ones included."""
    return set(steps_of(history))


async def test_one_no_aborts_everywhere_and_the_saga_compensates(
    saga, product, engine, provider_admin, client
):
    sku = await product(stock=10, price=3000)
    customer = await factories.insert_wallet(engine, balance=100)
    handle = await saga([(sku, 1)], customer_id=customer, store_credit=2000)
    order_id = handle.id.removeprefix("order-")

    # Stock and card vote yes, the wallet no: the one NO decides, at once.
    logged = await eventually(lambda: factories.decision_of(engine, order_id), bool)
    assert logged.decision == "ABORT"
    error = await asyncio.wait_for(refusal_of(handle), 30)

    assert error.type == "InsufficientCredit"
    coordinator = client.get_workflow_handle(coordinator_workflow_id(order_id))
    ran = scheduled_activities(await coordinator.fetch_history())
    commits = {TwoPhaseAct.COMMIT_STOCK, TwoPhaseAct.COMMIT_STORE_CREDIT}
    assert ran & {*commits, TwoPhaseAct.CONFIRM_CARD_HOLD} == set(), ran
    aborts = {TwoPhaseAct.ABORT_STOCK, TwoPhaseAct.ABORT_STORE_CREDIT}
    assert {*aborts, TwoPhaseAct.CANCEL_CARD_HOLD} <= ran, ran
    state = await state_of(handle)
    assert state.status == "CANCELLED"
    assert state.two_phase is not None
    assert state.two_phase.decision == "ABORT"
    assert state.two_phase.votes["store_credit"] == "NO"
    assert state.compensations == ["cancel_order"]
    assert await factories.stock_of(engine, sku) == 10
    assert await factories.balance_of(engine, customer) == 100
    assert (await factories.hold_of(engine, state.order_id)).status == "VOIDED"
    assert await factories.payments_of(engine, state.order_id) == []
    assert await provider_authorizations(provider_admin, state.order_id) == [("voided", 0)]
    assert (await factories.decision_of(engine, state.order_id)).decision == "ABORT"
    assert await factories.prepared_branches(engine, state.order_id) == []


async def test_declined_card_aborts_the_stock_and_credit_branches(saga, product, engine):
    sku = await product(stock=4, price=1000)
    customer = await factories.insert_wallet(engine, balance=500)
    handle = await saga(
        [(sku, 2)], customer_id=customer, store_credit=500, payment_token="tok_decline"
    )

    error = await refusal_of(handle)

    assert error.type == "PaymentDeclined"
    assert await factories.stock_of(engine, sku) == 4
    assert await factories.balance_of(engine, customer) == 500
    assert await factories.reservations_of(engine, (await state_of(handle)).order_id) == []


async def test_participant_silent_past_the_deadline_aborts(saga, product, engine, client):
    sku = await product(stock=5, price=1000)
    customer = await factories.insert_wallet(engine, balance=5000)
    # Hold the wallet row so the store-credit prepare cannot answer in time.
    async with factories.wallet_locked(engine, customer) as blocker:
        handle = await saga(
            [(sku, 1)], customer_id=customer, store_credit=500, prepare_timeout_s=1.0
        )
        state = await eventually(
            lambda: state_of(handle), lambda s: s.status != "PENDING", deadline_s=30
        )
        await blocker.rollback()

    assert state.status == "CANCELLED"
    assert state.two_phase is not None
    assert state.two_phase.votes["store_credit"] == "TIMEOUT"
    assert state.two_phase.decision == "ABORT"
    # The late prepare finds its branch aborted and leaves nothing behind.
    assert (
        await eventually(
            lambda: factories.prepared_branches(engine, state.order_id), lambda b: b == []
        )
        == []
    )
    assert await factories.balance_of(engine, customer) == 5000
    assert await factories.stock_of(engine, sku) == 5
    # Replayed as a worker that lost it from its cache would replay it: the timed-out
    # local prepare comes back as its bare cause, and must be the same TIMEOUT vote.
    coordinator = client.get_workflow_handle(coordinator_workflow_id(state.order_id))
    replayed = await replayer().replay_workflow(
        await coordinator.fetch_history(), raise_on_replay_failure=False
    )
    assert replayed.replay_failure is None, replayed.replay_failure


def commit_failing_twice(engine: Any) -> Any:
    real = StoreCreditParticipant(engine)

    @activity.defn(name=TwoPhaseAct.COMMIT_STORE_CREDIT)
    async def flaky(call: BranchCall) -> BranchAck:
        if activity.info().attempt <= 2:
            raise RuntimeError("wallet database briefly unreachable")
        return await real.commit_store_credit(call)

    return flaky


async def test_commit_failing_then_recovering_is_retried_never_reverted(
    saga, product, engine, custom_worker, client
):
    queue = await custom_worker({TwoPhaseAct.COMMIT_STORE_CREDIT: commit_failing_twice(engine)})
    sku = await product(stock=5, price=1000)
    customer = await factories.insert_wallet(engine, balance=800)

    state: SagaState = await (
        await saga([(sku, 1)], customer_id=customer, store_credit=800, task_queue=queue)
    ).result()

    assert state.status == "CONFIRMED"
    assert await factories.balance_of(engine, customer) == 0
    assert await factories.stock_of(engine, sku) == 4
    coordinator = client.get_workflow_handle(f"tpc-{state.order_id}")
    history = await coordinator.fetch_history()
    commit_attempts = [n for name, n in step_attempts(history) if name == "commit_store_credit"]
    assert max(commit_attempts) == 3


@activity.defn(name=Act.CREATE_SHIPMENT)
async def shipping_refuses(cmd: CreateShipment) -> ShipmentCreated:
    raise ApplicationError("no carrier", type="ShippingRefused", non_retryable=True)


async def test_failure_after_commit_undoes_every_committed_effect(
    saga, product, engine, custom_worker, provider_admin
):
    queue = await custom_worker({Act.CREATE_SHIPMENT: shipping_refuses})
    sku = await product(stock=5, price=1000)
    customer = await factories.insert_wallet(engine, balance=700)
    handle = await saga([(sku, 2)], customer_id=customer, store_credit=700, task_queue=queue)

    error = await refusal_of(handle)

    assert error.type == "ShippingRefused"
    state = await state_of(handle)
    assert state.compensations == [
        "refund_payment",
        "refund_store_credit",
        "release_stock",
        "cancel_order",
    ]
    assert await factories.stock_of(engine, sku) == 5
    assert await factories.balance_of(engine, customer) == 700
    [payment] = await factories.payments_of(engine, state.order_id)
    assert (payment.status, payment.refunded_amount) == ("REFUNDED", 1300)
    held = (await provider_admin.get("/v1/payments", params={"order_id": state.order_id})).json()
    assert [(a["status"], a["amount_refunded"]) for a in held["authorizations"]] == [
        ("refunded", 1300)
    ]
    assert [r["amount"] for r in held["refunds"]] == [1300]


async def test_two_orders_preparing_on_the_last_unit_one_commits(saga, product, engine):
    sku = await product(stock=1, price=1000)
    first = await factories.insert_wallet(engine, balance=1000)
    second = await factories.insert_wallet(engine, balance=1000)

    handles = await asyncio.gather(
        saga([(sku, 1)], customer_id=first, store_credit=1000, payment_token=""),
        saga([(sku, 1)], customer_id=second, store_credit=1000, payment_token=""),
    )
    outcomes = await asyncio.gather(*(h.result() for h in handles), return_exceptions=True)

    confirmed = [o for o in outcomes if isinstance(o, SagaState)]
    assert len(confirmed) == 1
    assert await factories.stock_of(engine, sku) == 0
    balances = sorted([await factories.balance_of(engine, c) for c in (first, second)])
    assert balances == [0, 1000]
    loser = next(h for h, o in zip(handles, outcomes, strict=True) if not isinstance(o, SagaState))
    assert (await state_of(loser)).compensations == ["cancel_order"]


async def test_two_orders_spending_the_same_credit_never_overdraw(saga, product, engine):
    sku = await product(stock=10, price=1000)
    customer = await factories.insert_wallet(engine, balance=1500)

    handles = await asyncio.gather(
        *(
            saga([(sku, 1)], customer_id=customer, store_credit=1000, payment_token="")
            for _ in range(3)
        )
    )
    outcomes = await asyncio.gather(*(h.result() for h in handles), return_exceptions=True)

    assert sum(isinstance(o, SagaState) for o in outcomes) == 1
    assert await factories.balance_of(engine, customer) == 500
    assert await factories.stock_of(engine, sku) == 9


async def coordinator_outcome(client: Client, order_id: str) -> TwoPhaseOutcome:
    handle = client.get_workflow_handle(coordinator_workflow_id(order_id))
    outcome: TwoPhaseOutcome = await handle.query("outcome", result_type=TwoPhaseOutcome)
    return outcome


async def test_out_of_stock_aborts_without_asking_for_the_store_credit(
    saga, product, engine, client
):
    """Stock answers first (lock order) and says no: the order is lost, so the
    wallet is never locked for it."""
    sku = await product(stock=1, price=1000)
    customer = await factories.insert_wallet(engine, balance=5000)
    handle = await saga([(sku, 2)], customer_id=customer, store_credit=2000, payment_token="")

    error = await refusal_of(handle)

    assert error.type == "OutOfStock"
    order_id = (await state_of(handle)).order_id
    outcome = await coordinator_outcome(client, order_id)
    assert (outcome.decision, outcome.votes) == ("ABORT", {"stock": "NO", "store_credit": "NO"})
    assert outcome.reasons["store_credit"].startswith("not asked"), outcome.reasons
    assert await factories.balance_of(engine, customer) == 5000
    assert await factories.prepared_branches(engine, order_id) == []


async def test_the_wallet_is_not_locked_while_the_stock_prepare_waits(
    saga, product, engine, client
):
    """Stock prepares before store credit (lock rank): while another transaction
    holds the product, this one holds nothing of the wallet, so no two orders can
    each hold what the other waits for. (Prepared in parallel, the wallet's
    branch would be prepared here, holding the row.)"""
    sku = await product(stock=5, price=1000)
    customer = await factories.insert_wallet(engine, balance=1000)
    async with engine.connect() as holder:
        await holder.begin()
        await holder.execute(
            text("SELECT 1 FROM inventory.products WHERE sku = :s FOR UPDATE"), {"s": sku}
        )
        handle = await saga([(sku, 1)], customer_id=customer, store_credit=1000, payment_token="")
        await factories.lock_waits(engine, 1)  # the stock prepare, on the product
        await asyncio.sleep(0.5)  # time for a parallel wallet prepare to have run
        order_id = handle.id.removeprefix("order-")
        # Not the coordinator's query: its prepares are local activities, and a
        # workflow task waiting on one answers queries only when it ends.
        prepared = await factories.prepared_branches(engine, order_id)
        async with engine.connect() as probe:
            await probe.execute(text("SET lock_timeout = 100"))
            free = await probe.scalar(
                text("SELECT 1 FROM payments.wallets WHERE customer_id = :c FOR UPDATE"),
                {"c": customer},
            )
            await probe.rollback()
        await holder.rollback()

    state: SagaState = await handle.result()
    assert prepared == []  # stock still waiting, store credit not yet asked
    assert free == 1
    assert state.status == "CONFIRMED"
    assert await factories.balance_of(engine, customer) == 0


def hanging(name: str, release: asyncio.Event, started: asyncio.Event) -> Any:
    @activity.defn(name=name)
    async def hang(call: BranchCall) -> Any:
        started.set()
        await release.wait()
        raise RuntimeError("released by the test")

    return hang


async def test_coordinator_terminated_after_commit_the_saga_finishes_the_commit(
    saga, product, engine, custom_worker, client
):
    started, release = asyncio.Event(), asyncio.Event()
    queue = await custom_worker(
        {TwoPhaseAct.COMMIT_STOCK: hanging(TwoPhaseAct.COMMIT_STOCK, release, started)}
    )
    sku = await product(stock=5, price=1000)
    customer = await factories.insert_wallet(engine, balance=1000)
    handle = await saga([(sku, 2)], customer_id=customer, store_credit=800, task_queue=queue)
    await asyncio.wait_for(started.wait(), 20)
    order_id = (await state_of(handle)).order_id
    assert (await factories.decision_of(engine, order_id)).decision == "COMMIT"

    await client.get_workflow_handle(f"tpc-{order_id}").terminate("operator: coordinator stuck")
    try:
        state: SagaState = await asyncio.wait_for(handle.result(), 60)
    finally:
        release.set()

    assert state.status == "CONFIRMED"
    assert await factories.prepared_branches(engine, order_id) == []
    assert await factories.stock_of(engine, sku) == 3
    assert await factories.balance_of(engine, customer) == 200
    assert (await factories.hold_of(engine, order_id)).status == "CAPTURED"


async def test_coordinator_terminated_before_deciding_the_saga_aborts_and_compensates(
    saga, product, engine, custom_worker, client
):
    started, release = asyncio.Event(), asyncio.Event()
    prepare = TwoPhaseAct.PREPARE_STORE_CREDIT
    queue = await custom_worker({prepare: hanging(prepare, release, started)})
    sku = await product(stock=5, price=1000)
    customer = await factories.insert_wallet(engine, balance=1000)
    handle = await saga(
        [(sku, 2)], customer_id=customer, store_credit=800, task_queue=queue, prepare_timeout_s=60
    )
    await asyncio.wait_for(started.wait(), 20)
    order_id = (await state_of(handle)).order_id
    await eventually(lambda: factories.prepared_branches(engine, order_id), lambda b: len(b) == 1)

    await client.get_workflow_handle(f"tpc-{order_id}").terminate("operator: coordinator stuck")
    try:
        error = await asyncio.wait_for(refusal_of(handle), 60)
    finally:
        release.set()

    assert error.type == "TwoPhaseAborted"
    assert (await factories.decision_of(engine, order_id)).decision == "ABORT"
    assert await factories.prepared_branches(engine, order_id) == []
    assert await factories.stock_of(engine, sku) == 5
    assert await factories.balance_of(engine, customer) == 1000
    assert (await factories.hold_of(engine, order_id)).status == "VOIDED"
    assert (await state_of(handle)).compensations == ["cancel_order"]
