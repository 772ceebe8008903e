"""The 2PC participants on real PostgreSQL: every protocol call idempotent, in any order."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from activities.card_hold import CardHoldParticipant
from activities.stock_branch import StockParticipant
from activities.store_credit import StoreCreditParticipant
from db.xa import ProtocolViolation
from domain.two_phase import BranchCall, Vote, branch_gid
from tests import card_stand_ins, factories
from tests.card_stand_ins import DiesAfterAuthorizing, WorkerDied

pytestmark = pytest.mark.asyncio


def stock_call(sku: str, quantity: int) -> BranchCall:
    tx_id = str(uuid.uuid4())
    return BranchCall(
        tx_id=tx_id,
        gid=branch_gid(tx_id, "stock"),
        payload={"order_id": tx_id, "lines": {sku: quantity}},
    )


def credit_call(customer_id: str, amount: int) -> BranchCall:
    tx_id = str(uuid.uuid4())
    return BranchCall(
        tx_id=tx_id,
        gid=branch_gid(tx_id, "store_credit"),
        payload={"order_id": tx_id, "customer_id": customer_id, "amount": amount},
    )


def card_call(amount: int, token: str = "tok_ok") -> BranchCall:
    tx_id = str(uuid.uuid4())
    return BranchCall(
        tx_id=tx_id,
        gid=branch_gid(tx_id, "card"),
        payload={
            "order_id": tx_id,
            "customer_id": factories.customer(),
            "amount": amount,
            "currency": "EUR",
            "payment_token": token,
        },
    )


@pytest.fixture
def stock(engine):
    return StockParticipant(engine, lock_timeout_ms=500)


@pytest.fixture
def credit(engine):
    return StoreCreditParticipant(engine, lock_timeout_ms=500)


@pytest.fixture
def cut_short(engine, settings, provider_client):
    """The card's try, cut short between authorizing and recording the hold."""
    return card_stand_ins.participant(DiesAfterAuthorizing, engine, settings, provider_client)


async def test_prepare_twice_holds_one_prepared_transaction(stock, engine, product):
    sku = await product(stock=5)
    call = stock_call(sku, 2)

    first, second = await stock.prepare_stock(call), await stock.prepare_stock(call)

    assert (first.vote, second.vote) == (Vote.YES, Vote.YES)
    assert await factories.prepared_branches(engine, call.tx_id) == [call.gid]
    # Prepared but not committed: nobody else sees the units gone yet.
    assert await factories.stock_of(engine, sku) == 5
    await stock.abort_stock(call)


async def test_commit_twice_applies_once(stock, engine, product):
    sku = await product(stock=5)
    call = stock_call(sku, 2)
    await stock.prepare_stock(call)

    await stock.commit_stock(call)
    ack = await stock.commit_stock(call)

    assert ack.outcome == "COMMITTED"
    assert await factories.stock_of(engine, sku) == 3
    assert await factories.prepared_branches(engine, call.tx_id) == []
    assert len(await factories.reservations_of(engine, call.tx_id)) == 1
    with pytest.raises(ProtocolViolation):
        await stock.abort_stock(call)


async def test_abort_before_prepare_makes_the_late_prepare_vote_no(stock, engine, product):
    sku = await product(stock=5)
    call = stock_call(sku, 2)

    await stock.abort_stock(call)
    late = await stock.prepare_stock(call)

    assert late.vote is Vote.NO
    assert await factories.prepared_branches(engine, call.tx_id) == []
    assert await factories.stock_of(engine, sku) == 5
    with pytest.raises(ProtocolViolation):
        await stock.commit_stock(call)


async def test_abort_twice_after_prepare_rolls_back_once(stock, engine, product):
    sku = await product(stock=5)
    call = stock_call(sku, 5)
    await stock.prepare_stock(call)

    await stock.abort_stock(call)
    await stock.abort_stock(call)

    assert await factories.prepared_branches(engine, call.tx_id) == []
    assert await factories.stock_of(engine, sku) == 5
    assert await factories.reservations_of(engine, call.tx_id) == []


async def test_out_of_stock_votes_no_with_the_refusal(stock, engine, product):
    sku = await product(stock=1)
    call = stock_call(sku, 2)

    reply = await stock.prepare_stock(call)

    assert (reply.vote, reply.refusal) == (Vote.NO, "OutOfStock")
    assert await factories.prepared_branches(engine, call.tx_id) == []


async def test_prepared_branch_holds_its_rows_until_resolved(stock, engine, product):
    sku = await product(stock=1)
    first, second = stock_call(sku, 1), stock_call(sku, 1)
    await stock.prepare_stock(first)

    # The second waits for the row past its lock timeout and votes no.
    blocked = await stock.prepare_stock(second)
    await stock.commit_stock(first)

    assert blocked.vote is Vote.NO
    assert await factories.stock_of(engine, sku) == 0


async def test_store_credit_never_goes_negative(credit, engine):
    customer_id = await factories.insert_wallet(engine, balance=1000)
    big, small = credit_call(customer_id, 1500), credit_call(customer_id, 600)

    refused = await credit.prepare_store_credit(big)
    accepted = await credit.prepare_store_credit(small)
    await credit.commit_store_credit(small)

    assert (refused.vote, refused.refusal) == (Vote.NO, "InsufficientCredit")
    assert accepted.vote is Vote.YES
    assert await factories.balance_of(engine, customer_id) == 400


async def books(admin, order_id: str) -> list[tuple[str, int]]:
    """The provider's authorizations for an order: (status, amount captured)."""
    held = (await admin.get("/v1/payments", params={"order_id": order_id})).json()
    return [(a["status"], a["amount_captured"]) for a in held["authorizations"]]


async def test_card_try_twice_confirm_twice_captures_once(card, engine, provider_admin):
    call = card_call(2500)

    votes = [(await card.try_card_hold(call)).vote for _ in range(2)]
    await card.confirm_card_hold(call)
    await card.confirm_card_hold(call)

    assert votes == [Vote.YES, Vote.YES]
    assert (await factories.hold_of(engine, call.tx_id)).status == "CAPTURED"
    [payment] = await factories.payments_of(engine, call.tx_id)
    assert (payment.status, payment.amount) == ("CAPTURED", 2500)
    assert await books(provider_admin, call.tx_id) == [("captured", 2500)]
    assert payment.provider_authorization_id is not None
    with pytest.raises(ProtocolViolation):
        await card.cancel_card_hold(call)


async def test_card_cancel_before_try_makes_the_late_try_vote_no(card, engine, provider_admin):
    call = card_call(900)

    await card.cancel_card_hold(call)
    late = await card.try_card_hold(call)

    assert late.vote is Vote.NO
    assert await books(provider_admin, call.tx_id) == []  # nothing was authorized
    assert (await factories.hold_of(engine, call.tx_id)).status == "VOIDED"
    with pytest.raises(ProtocolViolation):
        await card.confirm_card_hold(call)


@pytest.mark.parametrize(
    ("token", "refusal"),
    [
        ("tok_decline", "PaymentDeclined"),
        ("tok_insufficient", "PaymentDeclined"),
        ("tok_invalid", "PaymentRejected"),
    ],
)
async def test_a_card_the_provider_refuses_votes_no(card, engine, provider_admin, token, refusal):
    call = card_call(900, token=token)

    reply = await card.try_card_hold(call)
    again = await card.try_card_hold(call)

    assert (reply.vote, reply.refusal) == (Vote.NO, refusal)
    assert again.vote is Vote.NO
    assert (await factories.hold_of(engine, call.tx_id)).status == "REFUSED"
    assert await books(provider_admin, call.tx_id) == []


async def test_a_try_cut_short_after_authorizing_is_voided_by_its_cancel(
    card, cut_short, engine, provider_admin
):
    call = card_call(800)
    with pytest.raises(WorkerDied):
        await cut_short.try_card_hold(call)

    ack = await card.cancel_card_hold(call)
    after_cancel = await books(provider_admin, call.tx_id)
    late = await card.try_card_hold(call)

    # Voided by the cancel itself, before any late try could look.
    assert (ack.outcome, after_cancel) == ("VOIDED", [("voided", 0)])
    assert late.vote is Vote.NO
    assert await books(provider_admin, call.tx_id) == [("voided", 0)]
    assert (await factories.hold_of(engine, call.tx_id)).status == "VOIDED"


async def test_a_cancel_voids_what_a_try_of_the_previous_release_authorized_unrecorded(
    card, provider_admin
):
    call = card_call(800)
    # That release authorized before writing any row, and its worker died in between.
    p = call.payload
    body = {k: p[k] for k in ("order_id", "amount", "currency", "payment_token")}
    authorized = await provider_admin.post(
        "/v1/authorizations", json=body, headers={"Idempotency-Key": f"{call.gid}:authorize"}
    )
    assert authorized.status_code == 201

    ack = await card.cancel_card_hold(call)
    after_cancel = await books(provider_admin, call.tx_id)
    late = await card.try_card_hold(call)

    assert (ack.outcome, after_cancel) == ("VOIDED", [("voided", 0)])
    assert late.vote is Vote.NO
    assert await books(provider_admin, call.tx_id) == [("voided", 0)]


async def test_a_try_retried_after_being_cut_short_holds_the_first_authorization(
    card, cut_short, provider_admin
):
    call = card_call(700)
    with pytest.raises(WorkerDied):
        await cut_short.try_card_hold(call)

    again = await card.try_card_hold(call)
    await card.confirm_card_hold(call)

    assert again.vote is Vote.YES
    assert await books(provider_admin, call.tx_id) == [("captured", 700)]


class CancelledOnTheWay(CardHoldParticipant):
    """A try whose hold is cancelled, cancel and all, while it is on its way to the provider."""

    async def _authorize(self, call: BranchCall) -> str:
        await self.cancel_card_hold(call)  # looks at the provider: nothing there yet
        return await super()._authorize(call)


async def test_a_try_cancelled_while_authorizing_votes_no_and_voids_what_it_authorized(
    engine, settings, provider_client, provider_admin
):
    card = card_stand_ins.participant(CancelledOnTheWay, engine, settings, provider_client)
    call = card_call(500)

    reply = await card.try_card_hold(call)

    assert reply.vote is Vote.NO
    assert await books(provider_admin, call.tx_id) == [("voided", 0)]
    hold = await factories.hold_of(engine, call.tx_id)
    assert (hold.status, hold.provider_authorization_id is not None) == ("VOIDED", True)


async def test_a_retried_try_finding_the_tombstone_voids_what_an_earlier_attempt_held(
    card, provider_admin
):
    call = card_call(600)
    await card.cancel_card_hold(call)
    # An earlier attempt of the try authorized, then failed before voiding.
    p = call.payload
    body = {k: p[k] for k in ("order_id", "amount", "currency", "payment_token")}
    await provider_admin.post(
        "/v1/authorizations", json=body, headers={"Idempotency-Key": f"{call.gid}:authorize"}
    )

    again = await card.try_card_hold(call)

    assert again.vote is Vote.NO
    assert await books(provider_admin, call.tx_id) == [("voided", 0)]


async def test_a_refund_of_a_payment_the_provider_does_not_list_is_retried_not_skipped(
    engine, sessions, provider_client, settings
):
    from activities.payments import PaymentActivities
    from activities.provider_client import ProviderUnavailable
    from db.tables import payments
    from domain.activities import RefundPayment
    from security.sealed import Sealer
    from wiring.activities import provider_retry

    order_id = str(uuid.uuid4())
    async with engine.begin() as conn:
        await conn.execute(
            payments.insert().values(
                payment_id=str(uuid.uuid4()),
                order_id=order_id,
                customer_id="c",
                amount=500,
                currency="EUR",
                status="CAPTURED",
                provider_authorization_id="auth_unknown_to_the_provider",
            )
        )
    refunds = PaymentActivities(
        sessions,
        provider_client,
        provider_retry(settings.provider()),
        Sealer.from_keys(settings.card_keys()),
    )
    command = RefundPayment(
        idempotency_key=f"order-{order_id}:refund_payment",
        order_id=order_id,
        correlation_id=f"order-{order_id}",
        fences=f"order-{order_id}:charge_payment",
    )

    with pytest.raises(ProviderUnavailable, match="not listed"):
        await refunds.refund_payment(command)

    [payment] = await factories.payments_of(engine, order_id)
    assert (payment.status, payment.refunded_amount) == ("CAPTURED", 0)


async def test_card_cancel_overlapping_an_in_flight_try_still_voids_it(card, engine):
    from sqlalchemy import text

    call = card_call(700)
    async with engine.connect() as late_try:
        await late_try.begin()
        # A try still in flight: its TRYING row is written but not yet committed.
        await late_try.execute(
            text(
                "INSERT INTO payments.card_holds (tx_id, order_id, customer_id, amount,"
                " currency, status, expires_at)"
                " VALUES (:t, :t, 'c', 700, 'EUR', 'TRYING', now() + interval '1 day')"
            ),
            {"t": call.tx_id},
        )
        cancelling = asyncio.create_task(card.cancel_card_hold(call))
        await factories.lock_waits(engine, at_least=1)  # its tombstone waits on the try's row
        await late_try.commit()
        ack = await cancelling

    assert ack.outcome == "VOIDED"
    assert (await factories.hold_of(engine, call.tx_id)).status == "VOIDED"
