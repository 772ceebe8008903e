"""Payments service: charge the customer through the provider, refund on compensation.

A charge authorizes, then captures, at the provider, and records the payment
and its outbox event locally; all of it inside the step's local transaction,
whose claimed idempotency key is held until the end. That hold matters: the
refund fences the charge by claiming the same key, so it waits for a charge
attempt still talking to the provider and then sees what it did.

The refund does not trust the local row alone: a charge whose answer was lost
(timeout, dropped connection) may have charged at the provider without any
local record. So it asks the provider what it holds for the order under the
charge's key (or the recorded authorization: the 2PC's card hold captures
under its own), and voids or refunds exactly that.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, update
from temporalio import activity

from activities._common import context, opened_token, stable_id
from activities.provider_client import PaymentProviderClient, ProviderUnavailable
from activities.provider_retry import ProviderRetry
from db.engine import SessionFactory
from db.tables import payments
from db.unit_of_work import Step, apply_once
from domain.activities import Act, ChargePayment, PaymentCharged, PaymentRefunded, RefundPayment
from security.sealed import Sealer

SERVICE = "payments"
AGGREGATE = "payment"


def authorize_key(charge_key: str) -> str:
    return f"{charge_key}:authorize"


class PaymentActivities:
    def __init__(
        self,
        sessions: SessionFactory,
        provider: PaymentProviderClient,
        retry: ProviderRetry,
        sealer: Sealer,
    ) -> None:
        self._sessions = sessions
        self._provider = provider
        self._retry = retry
        self._sealer = sealer

    @activity.defn(name=Act.CHARGE_PAYMENT)
    async def charge_payment(self, cmd: ChargePayment) -> PaymentCharged:
        async def change(step: Step) -> PaymentCharged:
            auth = await self._provider.authorize(
                order_id=cmd.order_id,
                amount=cmd.amount,
                currency=cmd.currency,
                payment_token=opened_token(self._sealer, cmd.payment_token, cmd.order_id),
                key=authorize_key(cmd.idempotency_key),
            )
            await self._provider.capture(auth["id"], key=f"{cmd.idempotency_key}:capture")
            payment_id = stable_id(cmd.idempotency_key)
            await step.session.execute(
                payments.insert().values(
                    payment_id=payment_id,
                    order_id=cmd.order_id,
                    customer_id=cmd.customer_id,
                    amount=cmd.amount,
                    currency=cmd.currency,
                    status="CAPTURED",
                    provider_authorization_id=auth["id"],
                )
            )
            payload = {
                "order_id": cmd.order_id,
                "payment_id": payment_id,
                "amount": cmd.amount,
                "currency": cmd.currency,
            }
            step.record(AGGREGATE, cmd.order_id, "PaymentCaptured", payload)
            return PaymentCharged(payment_id=payment_id, amount=cmd.amount)

        return await self._retry.step(
            lambda: apply_once(self._sessions, context(SERVICE, cmd), change, PaymentCharged)
        )

    @activity.defn(name=Act.REFUND_PAYMENT)
    async def refund_payment(self, cmd: RefundPayment) -> PaymentRefunded:
        refund_key = cmd.idempotency_key

        async def change(step: Step) -> PaymentRefunded:
            local = (
                await step.session.execute(
                    update(payments)
                    .where(payments.c.order_id == cmd.order_id, payments.c.status == "CAPTURED")
                    .values(
                        status="REFUNDED", refunded_amount=payments.c.amount, refunded_at=func.now()
                    )
                    .returning(
                        payments.c.payment_id,
                        payments.c.amount,
                        payments.c.provider_authorization_id,
                    )
                )
            ).first()
            if local is not None and local.provider_authorization_id is None:
                # Taken before payments went through the provider: settled here.
                undone = PaymentRefunded(refunded_amount=local.amount)
            else:
                known = local.provider_authorization_id if local is not None else None
                undone = await self._undo_at_provider(cmd.order_id, known, cmd.fences, refund_key)
            if undone.undid:
                payload = {
                    "order_id": cmd.order_id,
                    "payment_id": str(local.payment_id) if local else None,
                    "amount": undone.refunded_amount,
                    "voided": undone.voided,
                }
                step.record(AGGREGATE, cmd.order_id, "PaymentRefunded", payload)
            return undone

        return await self._retry.undo(
            lambda: apply_once(
                self._sessions, context(SERVICE, cmd), change, PaymentRefunded, fence=cmd.fences
            )
        )

    async def _undo_at_provider(
        self, order_id: str, known: str | None, charge_key: str | None, refund_key: str
    ) -> PaymentRefunded:
        """Whatever the charge did at the provider, recorded here or not (a lost answer).

        It looks for the recorded authorization (a saga charge, or the 2PC's card
        hold) and for one made under the charge step's authorize key.
        """
        wanted = {known} if known else set()
        if charge_key:
            wanted.add(authorize_key(charge_key))
        held = await self._provider.payments_for(order_id)
        found = [a for a in held["authorizations"] if wanted & {a["id"], a["idempotency_key"]}]
        if known and known not in {a["id"] for a in found}:
            # Recorded here, unknown there: the wrong provider, or its data lost.
            # Not "nothing to refund": retried, and visible as a stuck undo.
            raise ProviderUnavailable(f"authorization {known} of order {order_id} not listed")
        undone = PaymentRefunded(refunded_amount=0)
        for auth in found:
            one = await self._undo_authorization(auth, refund_key)
            undone = PaymentRefunded(
                refunded_amount=undone.refunded_amount + one.refunded_amount,
                voided=undone.voided or one.voided,
            )
        return undone

    async def _undo_authorization(self, auth: dict[str, Any], key: str) -> PaymentRefunded:
        """Void what was only authorized; refund what was captured and not yet refunded."""
        if auth["status"] == "authorized":
            await self._provider.void(auth["id"], key=f"{key}:void:{auth['id']}")
        if auth["status"] in ("authorized", "voided"):
            return PaymentRefunded(refunded_amount=0, voided=True)
        refunded = int(auth["amount_refunded"])
        outstanding = int(auth["amount_captured"]) - refunded
        if outstanding > 0:
            # The key names what was refunded before: if that changed (someone
            # refunded part by hand), this is another request, not a replay.
            refund_key = f"{key}:refund:{auth['id']}:{refunded}"
            await self._provider.refund(auth["id"], outstanding, key=refund_key)
        # Counted whole: a retry after a refund whose answer was lost finds it done.
        return PaymentRefunded(refunded_amount=int(auth["amount_captured"]))
