"""Payments service: charge the customer, refund on compensation.

For now the decision is made here, in the payments schema: the token
`tok_decline` is declined, any other is approved. An HTTP provider replaces
this later without changing the saga.
"""

from __future__ import annotations

from sqlalchemy import func, update
from temporalio import activity

from activities._common import context, refusal, stable_id
from db.engine import SessionFactory
from db.tables import payments
from db.unit_of_work import Step, apply_once
from domain.activities import Act, ChargePayment, PaymentCharged, PaymentRefunded, RefundPayment
from domain.errors import ErrorType

SERVICE = "payments"
AGGREGATE = "payment"
DECLINED_TOKENS = frozenset({"tok_decline"})


class PaymentActivities:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name=Act.CHARGE_PAYMENT)
    async def charge_payment(self, cmd: ChargePayment) -> PaymentCharged:
        async def change(step: Step) -> PaymentCharged:
            if cmd.payment_token in DECLINED_TOKENS:
                raise refusal(ErrorType.PAYMENT_DECLINED, "card declined")
            payment_id = stable_id(cmd.idempotency_key)
            await step.session.execute(
                payments.insert().values(
                    payment_id=payment_id,
                    order_id=cmd.order_id,
                    customer_id=cmd.customer_id,
                    amount=cmd.amount,
                    currency=cmd.currency,
                    status="CAPTURED",
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

        return await apply_once(self._sessions, context(SERVICE, cmd), change, PaymentCharged)

    @activity.defn(name=Act.REFUND_PAYMENT)
    async def refund_payment(self, cmd: RefundPayment) -> PaymentRefunded:
        async def change(step: Step) -> PaymentRefunded:
            refunded = (
                await step.session.execute(
                    update(payments)
                    .where(payments.c.order_id == cmd.order_id, payments.c.status == "CAPTURED")
                    .values(
                        status="REFUNDED", refunded_amount=payments.c.amount, refunded_at=func.now()
                    )
                    .returning(payments.c.payment_id, payments.c.amount)
                )
            ).first()
            if refunded is None:
                return PaymentRefunded(refunded_amount=0)
            payload = {
                "order_id": cmd.order_id,
                "payment_id": str(refunded.payment_id),
                "amount": refunded.amount,
            }
            step.record(AGGREGATE, cmd.order_id, "PaymentRefunded", payload)
            return PaymentRefunded(refunded_amount=refunded.amount)

        return await apply_once(
            self._sessions, context(SERVICE, cmd), change, PaymentRefunded, fence=cmd.fences
        )
