"""The card as a TCC participant at the payment provider: try = authorize (a hold
with an expiry), confirm = capture, cancel = void.

The provider holds the money; `payments.card_holds` holds the participant's
state machine, keyed by the transaction id, so calls stay idempotent and
order-tolerant: a repeated try votes as before, a cancel that arrives before
its try leaves a VOIDED tombstone that makes the late try vote no (and void
what it authorized meanwhile), and confirm and cancel never undo each other.
Provider calls use keys derived from the branch gid, so a retried call, or a
try and a cancel racing to void one authorization, meet the provider's record.

No database transaction is held open across a provider call, so the try
records its intent first: a TRYING row (order, customer, amount; never the
token), committed before it authorizes, then HELD or REFUSED. A try cut short
in between leaves TRYING, which the recovery sweep treats like HELD; whoever
cancels (the coordinator, or recovery, which knows only the transaction id)
reads the order from the row and voids what the provider lists under the
try's key. A try that finds a tombstone looks too (an earlier attempt's
request may have landed late), and so does a cancel that leaves a tombstone
naming the order (a try of the previous release authorized before recording).
A request the provider applies only after every such look is not seen here:
that is the residue the payment audit (issue 9) reconciles.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity

from activities._common import opened_token, stable_id
from activities.provider_client import PaymentProviderClient, ProviderRefused
from activities.provider_retry import ProviderRetry
from db.engine import SessionFactory
from db.relay_ring import engine_of, ring_relay
from db.tables import card_holds, payments, service_tables
from db.unit_of_work import StepContext, event_row, insert_events
from db.xa import ProtocolViolation
from domain.activities import TwoPhaseAct
from domain.errors import ErrorType
from domain.two_phase import BranchAck, BranchCall, Vote, VoteReply
from security.sealed import Sealer

VOTES = {"HELD": Vote.YES, "CAPTURED": Vote.YES, "VOIDED": Vote.NO, "REFUSED": Vote.NO}
# The statuses under which the provider may hold money for the hold.
OPEN = ("TRYING", "HELD")


def _keys(gid: str) -> tuple[str, str, str]:
    return f"{gid}:authorize", f"{gid}:capture", f"{gid}:void"


class CardHoldParticipant:
    def __init__(
        self,
        sessions: SessionFactory,
        hold_ttl: timedelta,
        provider: PaymentProviderClient,
        retry: ProviderRetry,
        sealer: Sealer,
    ) -> None:
        self._sessions = sessions
        self._hold_ttl = hold_ttl
        self._provider = provider
        self._retry = retry
        self._sealer = sealer

    @activity.defn(name=TwoPhaseAct.TRY_CARD_HOLD)
    async def try_card_hold(self, call: BranchCall) -> VoteReply:
        refused: ProviderRefused | None = None
        status, recorded_auth = await self._start_try(call)
        if status == "TRYING":  # ours, or an earlier attempt's: same key, same authorization
            auth_id: str | None = None
            try:
                auth_id = await self._authorize(call)
            except ProviderRefused as err:
                refused = err
            status, recorded_auth = await self._finish_try(call, auth_id)
        if status == "VOIDED":
            # Cancelled (or lapsed) while, or before, we authorized: release it.
            # An earlier attempt may have authorized and failed before voiding.
            voidable = recorded_auth or await self._find_authorization(
                call, str(call.payload["order_id"])
            )
            if voidable is not None:
                await self._void(call, voidable)
        return _reply(status, refused)

    @activity.defn(name=TwoPhaseAct.CONFIRM_CARD_HOLD)
    async def confirm_card_hold(self, call: BranchCall) -> BranchAck:
        hold = await self._row(call.tx_id)
        status = None if hold is None else hold.status
        if status == "CAPTURED":
            return BranchAck(gid=call.gid, outcome="CAPTURED")
        if hold is None or status != "HELD":
            raise ProtocolViolation(f"hold {call.tx_id} cannot be captured: {status}")
        if hold.provider_authorization_id is not None:
            _, capture_key, _ = _keys(call.gid)
            await self._retry.undo(
                lambda: self._provider.capture(hold.provider_authorization_id, key=capture_key)
            )
        await self._record_capture(call)
        return BranchAck(gid=call.gid, outcome="CAPTURED")

    @activity.defn(name=TwoPhaseAct.CANCEL_CARD_HOLD)
    async def cancel_card_hold(self, call: BranchCall) -> BranchAck:
        status, auth_id, order_id = await self._record_cancel(call)
        if status == "CAPTURED":
            raise ProtocolViolation(f"hold {call.tx_id} cannot be voided: it is captured")
        if auth_id is None and order_id:
            auth_id = await self._find_authorization(call, order_id)
        if auth_id is not None:
            await self._void(call, auth_id)
        return BranchAck(gid=call.gid, outcome=str(status))

    async def _authorize(self, call: BranchCall) -> str:
        p = call.payload
        authorize_key, _, _ = _keys(call.gid)
        order_id = str(p["order_id"])
        token = opened_token(self._sealer, str(p["payment_token"]), order_id)
        auth = await self._retry.transient(
            lambda: self._provider.authorize(
                order_id=order_id,
                amount=int(p["amount"]),
                currency=str(p["currency"]),
                payment_token=token,
                key=authorize_key,
            )
        )
        return str(auth["id"])

    async def _void(self, call: BranchCall, auth_id: str) -> None:
        _, _, void_key = _keys(call.gid)

        async def void() -> None:
            try:
                await self._provider.void(auth_id, key=void_key)
            except ProviderRefused as err:
                if err.code != "authorization_voided":  # voided already: done
                    raise

        await self._retry.undo(void)

    async def _find_authorization(self, call: BranchCall, order_id: str) -> str | None:
        """An authorization a try made without recording it (it was cut short)."""
        authorize_key, _, _ = _keys(call.gid)
        held = await self._retry.undo(lambda: self._provider.payments_for(order_id))
        found = [a["id"] for a in held["authorizations"] if a["idempotency_key"] == authorize_key]
        return str(found[0]) if found else None

    async def _row(self, tx_id: str) -> Any:
        async with self._sessions() as session:
            return (
                await session.execute(select(card_holds).where(card_holds.c.tx_id == tx_id))
            ).first()

    async def _start_try(self, call: BranchCall) -> tuple[str, str | None]:
        """Record the intent (TRYING) unless a row exists, committed before any
        provider call; void an open hold past its expiry; (status, authorization)."""
        p = call.payload
        async with self._sessions() as session, session.begin():
            await session.execute(
                insert(card_holds)
                .values(
                    tx_id=call.tx_id,
                    order_id=str(p["order_id"]),
                    customer_id=str(p["customer_id"]),
                    amount=int(p["amount"]),
                    currency=str(p["currency"]),
                    status="TRYING",
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
                    card_holds.c.status.in_(OPEN),
                    card_holds.c.expires_at <= func.now(),
                )
                .values(status="VOIDED", resolved_at=func.now())
            )
            row = (
                await session.execute(
                    select(card_holds.c.status, card_holds.c.provider_authorization_id).where(
                        card_holds.c.tx_id == call.tx_id
                    )
                )
            ).one()
        return str(row.status), row.provider_authorization_id

    async def _finish_try(self, call: BranchCall, auth_id: str | None) -> tuple[str, str | None]:
        """TRYING becomes HELD (REFUSED without an authorization); a row cancelled
        meanwhile stays VOIDED but keeps what we authorized, so a retry of this
        try (if the void that follows fails) still knows what to void."""
        held = card_holds.c
        async with self._sessions() as session, session.begin():
            row = (
                await session.execute(
                    update(card_holds)
                    .where(held.tx_id == call.tx_id)
                    .values(
                        status=case(
                            (held.status == "TRYING", "HELD" if auth_id else "REFUSED"),
                            else_=held.status,
                        ),
                        provider_authorization_id=func.coalesce(
                            held.provider_authorization_id, auth_id
                        ),
                    )
                    .returning(held.status, held.provider_authorization_id)
                )
            ).one()
        return str(row.status), row.provider_authorization_id

    async def _record_capture(self, call: BranchCall) -> None:
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
                if status == "CAPTURED":
                    return  # a concurrent confirm recorded it
                raise ProtocolViolation(f"hold {call.tx_id} captured at the provider but {status}")
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
                    provider_authorization_id=captured.provider_authorization_id,
                )
            )
            event = event_row(
                StepContext(service_tables["payments"], call.gid, call.tx_id),
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
            await insert_events(session, service_tables["payments"].outbox, [event])
        ring_relay(engine_of(self._sessions), "payments")

    async def _record_cancel(self, call: BranchCall) -> tuple[str, str | None, str]:
        """TRYING or HELD becomes VOIDED; a tombstone when cancel came first.
        Returns (status, authorization, order): the order is the row's, so a
        cancel that knows only the transaction id can look the try up."""
        voided = card_holds.c.status.in_(OPEN)
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(card_holds)
                .where(card_holds.c.tx_id == call.tx_id, voided)
                .values(status="VOIDED", resolved_at=func.now())
            )
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
            # A try that was in flight committed TRYING under our insert: void it now.
            await session.execute(
                update(card_holds)
                .where(card_holds.c.tx_id == call.tx_id, voided)
                .values(status="VOIDED", resolved_at=func.now())
            )
            row = (
                await session.execute(
                    select(
                        card_holds.c.status,
                        card_holds.c.provider_authorization_id,
                        card_holds.c.order_id,
                    ).where(card_holds.c.tx_id == call.tx_id)
                )
            ).one()
        return str(row.status), row.provider_authorization_id, str(row.order_id)


def _reply(status: str, refused: ProviderRefused | None) -> VoteReply:
    vote = VOTES[status]
    if vote is Vote.YES:
        return VoteReply(vote=vote)
    if status == "REFUSED":
        declined = refused is None or refused.status == 402
        return VoteReply(
            vote=vote,
            reason=refused.message if refused else "card declined",
            refusal=ErrorType.PAYMENT_DECLINED if declined else ErrorType.PAYMENT_REJECTED,
        )
    return VoteReply(vote=vote, reason="hold already voided")
