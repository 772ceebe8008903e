"""The recovery sweep resolves what a vanished coordinator left open, from the decision log."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from activities.card_hold import CardHoldParticipant
from activities.coordinator_log import CoordinatorLog
from activities.stock_branch import StockParticipant
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
from tests import factories

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
    assert (await factories.decision_of(engine, call.tx_id)).decision == "ABORT"


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


def card_call(tx_id: str) -> BranchCall:
    return BranchCall(
        tx_id=tx_id,
        gid=branch_gid(tx_id, "card"),
        payload={
            "order_id": tx_id,
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
