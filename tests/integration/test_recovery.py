"""The recovery sweep resolves what a vanished coordinator left open, from the decision log."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio.client import WorkflowFailureError

from activities.card_hold import CardHoldParticipant
from activities.coordinator_log import CoordinatorLog
from activities.stock_branch import StockParticipant
from domain.activities import TwoPhaseAct
from domain.two_phase import (
    BranchCall,
    Decision,
    DecisionRecord,
    TwoPhaseInput,
    Vote,
    branch_gid,
    coordinator_workflow_id,
)
from recovery.sweep import sweep
from tests import card_stand_ins, factories
from tests.card_stand_ins import DiesAfterAuthorizing, WorkerDied

pytestmark = pytest.mark.asyncio
NOW = timedelta(0)


async def prepare_stock(engine, sku: str, quantity: int) -> BranchCall:
    tx_id = str(uuid.uuid4())
    call = BranchCall(
        tx_id=tx_id,
        gid=branch_gid(tx_id, "stock"),
        payload={"order_id": tx_id, "lines": {sku: quantity}},
    )
    assert (await StockParticipant(engine).prepare_stock(call)).vote is Vote.YES
    return call


async def test_branch_without_coordinator_or_decision_is_presumed_aborted(
    engine, client, product, card
):
    sku = await product(stock=5)
    call = await prepare_stock(engine, sku, 2)

    report = await sweep(engine, client, NOW, card)

    assert call.tx_id in report.aborted
    assert await factories.prepared_branches(engine, call.tx_id) == []
    assert await factories.stock_of(engine, sku) == 5
    logged = await factories.decision_of(engine, call.tx_id)
    # Presumed aborted, carried out on what it found, and so marked done.
    assert (logged.decision, logged.participants) == ("ABORT", ["stock"])
    assert logged.completed_at is not None


async def test_branch_with_a_logged_commit_is_committed(engine, client, sessions, product, card):
    sku = await product(stock=5)
    call = await prepare_stock(engine, sku, 2)
    await CoordinatorLog(sessions).record_decision(
        DecisionRecord(
            tx_id=call.tx_id,
            decision=Decision.COMMIT,
            participants=["stock"],
            votes={"stock": Vote.YES},
        )
    )

    report = await sweep(engine, client, NOW, card)

    assert call.tx_id in report.committed
    assert await factories.prepared_branches(engine, call.tx_id) == []
    assert await factories.stock_of(engine, sku) == 3
    assert (await factories.decision_of(engine, call.tx_id)).completed_at is not None


def card_call(tx_id: str, order_id: str | None = None) -> BranchCall:
    return BranchCall(
        tx_id=tx_id,
        gid=branch_gid(tx_id, "card"),
        payload={
            "order_id": order_id or tx_id,
            "customer_id": "c",
            "amount": 100,
            "currency": "EUR",
            "payment_token": "tok_ok",
        },
    )


async def test_orphaned_card_hold_is_voided(engine, client, sessions, card, provider_admin):
    tx_id = str(uuid.uuid4())
    call = card_call(tx_id)
    await card.try_card_hold(call)

    report = await sweep(engine, client, NOW, card)

    assert tx_id in report.aborted
    assert (await factories.hold_of(engine, tx_id)).status == "VOIDED"
    assert await voided_at_provider(provider_admin, call)


async def test_branch_of_a_running_coordinator_is_left_to_it(engine, client, product, card):
    sku = await product(stock=5)
    call = await prepare_stock(engine, sku, 1)
    # A coordinator that exists but has no worker yet: it still owns the decision.
    handle = await client.start_workflow(
        "TwoPhaseCommit",
        TwoPhaseInput(tx_id=call.tx_id, participants=[]),
        id=coordinator_workflow_id(call.tx_id),
        task_queue=f"idle-{uuid.uuid4().hex[:8]}",
    )

    left = await sweep(engine, client, NOW, card)
    await handle.terminate("test: coordinator lost")
    after = await sweep(engine, client, NOW, card)

    assert call.tx_id in left.left_to_coordinator
    assert await factories.decision_of(engine, call.tx_id) is not None
    assert call.tx_id in after.aborted
    assert await factories.stock_of(engine, sku) == 5


async def test_young_branches_are_not_touched(engine, client, product, card):
    sku = await product(stock=5)
    call = await prepare_stock(engine, sku, 1)

    report = await sweep(engine, client, timedelta(minutes=5), card)

    assert call.tx_id not in report.aborted
    assert await factories.prepared_branches(engine, call.tx_id) == [call.gid]
    await StockParticipant(engine).abort_stock(call)


async def lapsed_hold(engine, card) -> tuple[CardHoldParticipant, BranchCall]:
    """A card hold taken, then pushed past its expiry."""
    from sqlalchemy import update

    from db.tables import card_holds

    tx_id = str(uuid.uuid4())
    call = card_call(tx_id)
    assert (await card.try_card_hold(call)).vote is Vote.YES
    async with engine.begin() as conn:
        await conn.execute(
            update(card_holds)
            .where(card_holds.c.tx_id == tx_id)
            .values(expires_at=card_holds.c.created_at)
        )
    return card, call


async def voided_at_provider(admin, call: BranchCall) -> bool:
    held = (await admin.get("/v1/payments", params={"order_id": call.payload["order_id"]})).json()
    return [a["status"] for a in held["authorizations"]] == ["voided"]


async def test_an_expired_hold_is_voided_whatever_the_grace(
    engine, client, sessions, card, provider_admin
):
    card, call = await lapsed_hold(engine, card)

    report = await sweep(engine, client, timedelta(hours=1), card)

    assert call.tx_id in report.aborted  # an hour's grace, but the hold had lapsed
    assert (await factories.hold_of(engine, call.tx_id)).status == "VOIDED"
    assert await voided_at_provider(provider_admin, call)
    assert (await card.try_card_hold(call)).vote is Vote.NO


async def test_a_try_on_a_lapsed_hold_votes_no(engine, card, provider_admin):
    card, call = await lapsed_hold(engine, card)

    again = await card.try_card_hold(call)

    assert again.vote is Vote.NO
    assert (await factories.hold_of(engine, call.tx_id)).status == "VOIDED"
    assert await voided_at_provider(provider_admin, call)


async def books(admin, order_id: str) -> list[tuple[str, int]]:
    """The provider's authorizations for an order: (status, amount captured)."""
    held = (await admin.get("/v1/payments", params={"order_id": order_id})).json()
    return [(a["status"], a["amount_captured"]) for a in held["authorizations"]]


async def test_a_card_try_cut_short_after_authorizing_is_voided_by_the_sweep(
    engine, client, settings, provider_client, card, provider_admin
):
    # The transaction id is not the order id: recovery must learn the order from the row.
    tx_id, order_id = str(uuid.uuid4()), str(uuid.uuid4())
    call = card_call(tx_id, order_id)
    dying = card_stand_ins.participant(DiesAfterAuthorizing, engine, settings, provider_client)
    with pytest.raises(WorkerDied):
        await dying.try_card_hold(call)  # no coordinator: it was never started, or is lost

    report = await sweep(engine, client, NOW, card)

    assert tx_id in report.aborted
    assert await books(provider_admin, order_id) == [("voided", 0)]
    hold = await factories.hold_of(engine, tx_id)
    assert (hold.status, hold.order_id) == ("VOIDED", order_id)
    assert (await factories.decision_of(engine, tx_id)).decision == "ABORT"


async def test_a_saga_whose_coordinator_is_gone_voids_a_card_try_cut_short(
    saga, product, engine, settings, provider_client, custom_worker, client, provider_admin
):
    release = asyncio.Event()
    dying = card_stand_ins.participant(
        DiesAfterAuthorizing, engine, settings, provider_client, until=release
    )
    queue = await custom_worker({TwoPhaseAct.TRY_CARD_HOLD: dying.try_card_hold})
    sku = await product(stock=5, price=1000)
    customer = await factories.insert_wallet(engine, balance=1000)
    order_id = str(uuid.uuid4())
    handle = await saga(
        [(sku, 1)],
        customer_id=customer,
        store_credit=400,
        order_id=order_id,
        task_queue=queue,
        prepare_timeout_s=60,
    )
    await asyncio.wait_for(dying.authorized.wait(), 20)

    # The try's worker is silent after authorizing; the coordinator goes too.
    await client.get_workflow_handle(coordinator_workflow_id(order_id)).terminate("test: lost")
    try:
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(handle.result(), 60)
    finally:
        release.set()

    assert getattr(failed.value.cause, "type", None) == "TwoPhaseAborted"
    assert (await factories.decision_of(engine, order_id)).decision == "ABORT"
    assert await books(provider_admin, order_id) == [("voided", 0)]
    hold = await factories.hold_of(engine, order_id)
    assert (hold.status, hold.order_id) == ("VOIDED", order_id)
