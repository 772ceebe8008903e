"""The card as a TCC participant: try = authorize (a hold with an expiry),
confirm = capture, cancel = void.

Each call is an ordinary local transaction keyed by the transaction id: a
repeated try votes as before, a cancel that arrives before its try leaves a
VOIDED tombstone that makes the late try vote no, and confirm and cancel never
undo each other.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity

from activities._common import stable_id
from db.engine import SessionFactory
from db.tables import card_holds, payments
from db.unit_of_work import StepContext, event_row, insert_events
from db.xa import ProtocolViolation
from domain.activities import TwoPhaseAct
from domain.errors import ErrorType
from domain.two_phase import BranchAck, BranchCall, Vote, VoteReply

# The hold is decided here, not at the payment provider: the simulator's
# decline token, so one token behaves alike on both settlement paths.
DECLINED_TOKENS = frozenset({"tok_decline"})
VOTES = {"HELD": Vote.YES, "CAPTURED": Vote.YES, "VOIDED": Vote.NO, "REFUSED": Vote.NO}


class CardHoldParticipant:
    def __init__(self, sessions: SessionFactory, hold_ttl: timedelta) -> None:
        self._sessions = sessions
        self._hold_ttl = hold_ttl

    @activity.defn(name=TwoPhaseAct.TRY_CARD_HOLD)
    async def try_card_hold(self, call: BranchCall) -> VoteReply:
        p = call.payload
        declined = str(p["payment_token"]) in DECLINED_TOKENS
        async with self._sessions() as session, session.begin():
            await session.execute(
                insert(card_holds)
                .values(
                    tx_id=call.tx_id,
                    order_id=str(p["order_id"]),
                    customer_id=str(p["customer_id"]),
                    amount=int(p["amount"]),
                    currency=str(p["currency"]),
                    status="REFUSED" if declined else "HELD",
                    expires_at=func.now() + self._hold_ttl,
                )
                .on_conflict_do_nothing(index_elements=[card_holds.c.tx_id])
            )
            # A hold past its expiry has lapsed: voting YES on it would promise
            # a capture the card issuer will refuse.
            await session.execute(
                update(card_holds)
                .where(
                    card_holds.c.tx_id == call.tx_id,
                    card_holds.c.status == "HELD",
                    card_holds.c.expires_at <= func.now(),
                )
                .values(status="VOIDED", resolved_at=func.now())
            )
            status = await session.scalar(
                select(card_holds.c.status).where(card_holds.c.tx_id == call.tx_id)
            )
        vote = VOTES[str(status)]
        if vote is Vote.YES:
            return VoteReply(vote=vote)
        if status == "REFUSED":
            return VoteReply(vote=vote, reason="card declined", refusal=ErrorType.PAYMENT_DECLINED)
        return VoteReply(vote=vote, reason="hold already voided")

    @activity.defn(name=TwoPhaseAct.CONFIRM_CARD_HOLD)
    async def confirm_card_hold(self, call: BranchCall) -> BranchAck:
        async with self._sessions() as session, session.begin():
            captured = (
                await session.execute(
                    update(card_holds)
                    .where(card_holds.c.tx_id == call.tx_id, card_holds.c.status == "HELD")
                    .values(status="CAPTURED", resolved_at=func.now())
                    .returning(card_holds)
                )
            ).first()
            if captured is None:
                status = await session.scalar(
                    select(card_holds.c.status).where(card_holds.c.tx_id == call.tx_id)
                )
                if status != "CAPTURED":
                    raise ProtocolViolation(f"hold {call.tx_id} cannot be captured: {status}")
                return BranchAck(gid=call.gid, outcome="CAPTURED")
            # The capture is the payment the saga's refund_payment undoes.
            payment_id = stable_id(call.gid)
            await session.execute(
                payments.insert().values(
                    payment_id=payment_id,
                    order_id=captured.order_id,
                    customer_id=captured.customer_id,
                    amount=captured.amount,
                    currency=captured.currency,
                    status="CAPTURED",
                )
            )
            event = event_row(
                StepContext("payments", call.gid, call.tx_id),
                "payment",
                captured.order_id,
                "PaymentCaptured",
                {
                    "order_id": captured.order_id,
                    "payment_id": payment_id,
                    "amount": captured.amount,
                    "currency": captured.currency,
                },
            )
            await insert_events(session, "payments", [event])
        return BranchAck(gid=call.gid, outcome="CAPTURED")

    @activity.defn(name=TwoPhaseAct.CANCEL_CARD_HOLD)
    async def cancel_card_hold(self, call: BranchCall) -> BranchAck:
        async with self._sessions() as session, session.begin():
            status = await session.scalar(
                update(card_holds)
                .where(card_holds.c.tx_id == call.tx_id, card_holds.c.status == "HELD")
                .values(status="VOIDED", resolved_at=func.now())
                .returning(card_holds.c.status)
            )
            if status is None:
                # Cancel overtook try: leave a tombstone so the late try votes no.
                await session.execute(
                    insert(card_holds)
                    .values(
                        tx_id=call.tx_id,
                        order_id=str(call.payload.get("order_id", "")),
                        customer_id=str(call.payload.get("customer_id", "")),
                        amount=int(call.payload.get("amount", 0)),
                        currency=str(call.payload.get("currency", "EUR")),
                        status="VOIDED",
                        expires_at=func.now(),
                        resolved_at=func.now(),
                    )
                    .on_conflict_do_nothing(index_elements=[card_holds.c.tx_id])
                )
                # A try that was in flight committed HELD under our insert: void it now.
                status = await session.scalar(
                    update(card_holds)
                    .where(card_holds.c.tx_id == call.tx_id, card_holds.c.status == "HELD")
                    .values(status="VOIDED", resolved_at=func.now())
                    .returning(card_holds.c.status)
                ) or await session.scalar(
                    select(card_holds.c.status).where(card_holds.c.tx_id == call.tx_id)
                )
        if status == "CAPTURED":
            raise ProtocolViolation(f"hold {call.tx_id} cannot be voided: it is captured")
        return BranchAck(gid=call.gid, outcome=str(status))
