"""The card hold's state machine in `payments.card_holds`, one transaction per move.

TRYING (the intent, committed before the provider is called), then HELD or
REFUSED; HELD becomes CAPTURED (with the `payments` row and its event) or
VOIDED; a cancel that comes first leaves a VOIDED tombstone. The provider
calls between these moves are the participant's (activities.card_hold): no
transaction here is held open across one.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.dialects.postgresql import insert

from activities._common import stable_id
from db.engine import SessionFactory
from db.relay_ring import engine_of, ring_relay
from db.tables import card_holds, payments, service_tables
from db.unit_of_work import StepContext, event_row, insert_events
from db.xa import ProtocolViolation
from domain.two_phase import BranchCall

# The statuses under which the provider may hold money for the hold.
OPEN = ("TRYING", "HELD")


class CardHoldRows:
    """The participant's rows: each method reads or moves one hold, in its own transaction."""

    def __init__(self, sessions: SessionFactory, hold_ttl: timedelta) -> None:
        self._sessions = sessions
        self._hold_ttl = hold_ttl

    async def row(self, tx_id: str) -> Any:
        async with self._sessions() as session:
            return (
                await session.execute(select(card_holds).where(card_holds.c.tx_id == tx_id))
            ).first()

    async def start_try(self, call: BranchCall) -> tuple[str, str | None]:
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

    async def finish_try(self, call: BranchCall, auth_id: str | None) -> tuple[str, str | None]:
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

    async def record_capture(self, call: BranchCall) -> None:
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

    async def record_cancel(self, call: BranchCall) -> tuple[str, str | None, str]:
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
