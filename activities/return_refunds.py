"""Payments service, for returns: refund the card's share at the provider, credit the rest.

The card's share of a return is what the card paid of the order, in
proportion (domain.returns.card_share, counted over the order's earlier
refunded returns); the rest is store credit, credited to the customer's
wallet by the next step. Both run past the ReturnSaga's point of no return: a
refund cannot be taken back, so the refund ends done or refused, never given
up on (ProviderRetry.final).

The refund asks the provider under a key derived from the step's own, as
charge_payment does: an attempt whose answer was lost is answered, on the
next, from the provider's record instead of refunding twice.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from temporalio import activity

from activities._common import context
from activities.provider_client import PaymentProviderClient
from activities.provider_retry import ProviderRetry
from db.engine import SessionFactory
from db.tables import payments, return_refunds
from db.unit_of_work import Step, apply_once
from db.wallet_store import WalletStore, entry_uuid
from domain import wallet
from domain.returns import (
    CreditReturnWallet,
    RefundReturnCard,
    ReturnAct,
    ReturnCardRefunded,
    ReturnWalletCredited,
    card_share,
)

SERVICE = "payments"


def refund_key(step_key: str) -> str:
    return f"{step_key}:refund"


class ReturnRefundActivities:
    def __init__(
        self,
        sessions: SessionFactory,
        provider: PaymentProviderClient,
        retry: ProviderRetry,
        store: WalletStore | None = None,
    ) -> None:
        self._sessions = sessions
        self._provider = provider
        self._retry = retry
        self._store = store or WalletStore()

    @activity.defn(name=ReturnAct.REFUND_RETURN_CARD)
    async def refund_return_card(self, cmd: RefundReturnCard) -> ReturnCardRefunded:
        # Any try but the first may follow a refund whose answer was lost: it asks
        # the provider what was refunded under the key, since its own share, counted
        # anew, may differ now (another return of the order committed meanwhile), and
        # the provider refuses a key reused with another amount.
        retried = [activity.info().attempt > 1]

        async def change(step: Step) -> ReturnCardRefunded:
            # Locked: two returns of one order split their refunds one after the other.
            paid = (
                await step.session.execute(
                    select(
                        payments.c.payment_id,
                        payments.c.amount,
                        payments.c.provider_authorization_id,
                    )
                    .where(payments.c.order_id == cmd.order_id, payments.c.status == "CAPTURED")
                    .with_for_update()
                )
            ).first()
            before = await step.session.scalar(
                select(func.coalesce(func.sum(return_refunds.c.value), 0)).where(
                    return_refunds.c.order_id == cmd.order_id
                )
            )
            card_paid = paid.amount if paid is not None else 0
            card = card_share(int(before or 0), cmd.value, cmd.order_total, card_paid)
            refund_id = None
            key = refund_key(cmd.idempotency_key)
            if paid is not None and paid.provider_authorization_id is not None:
                done = await self._refunded_under(cmd.order_id, key) if retried[0] else None
                retried[0] = True
                if done is not None:
                    card, refund_id = min(int(done["amount"]), cmd.value), str(done["id"])
                elif card > 0:
                    refund = await self._provider.refund(
                        paid.provider_authorization_id, card, key=key
                    )
                    refund_id = str(refund["id"])
            if card > 0 and paid is not None:
                await step.session.execute(
                    update(payments)
                    .where(payments.c.payment_id == paid.payment_id)
                    .values(
                        refunded_amount=payments.c.refunded_amount + card, refunded_at=func.now()
                    )
                )
            refunded = ReturnCardRefunded(card_amount=card, store_credit_due=cmd.value - card)
            await step.session.execute(
                return_refunds.insert().values(
                    return_id=cmd.return_id,
                    order_id=cmd.order_id,
                    customer_id=cmd.customer_id,
                    value=cmd.value,
                    card_amount=card,
                    store_credit_amount=refunded.store_credit_due,
                    provider_refund_id=refund_id,
                )
            )
            payload = {"order_id": cmd.order_id, "return_id": cmd.return_id, "amount": card}
            step.record("payment", cmd.order_id, "ReturnCardRefunded", payload)
            return refunded

        return await self._retry.final(
            lambda: apply_once(self._sessions, context(SERVICE, cmd), change, ReturnCardRefunded)
        )

    async def _refunded_under(self, order_id: str, key: str) -> dict[str, Any] | None:
        """The refund the provider made under `key`, if it made one."""
        held = await self._provider.payments_for(order_id)
        return next((r for r in held["refunds"] if r.get("idempotency_key") == key), None)

    @activity.defn(name=ReturnAct.CREDIT_RETURN_WALLET)
    async def credit_return_wallet(self, cmd: CreditReturnWallet) -> ReturnWalletCredited:
        async def change(step: Step) -> ReturnWalletCredited:
            if cmd.amount <= 0:
                return ReturnWalletCredited(amount=0)
            entry = step.context.idempotency_key
            # A plain credit (no order id on the wallet event): the order's own
            # ledger entries stay what paid for it, which the audit sums.
            await self._store.change(
                step.session, cmd.customer_id, lambda now: wallet.credit(now, cmd.amount, entry)
            )
            await step.session.execute(
                update(return_refunds)
                .where(return_refunds.c.return_id == cmd.return_id)
                .values(wallet_entry_id=entry_uuid(entry))
            )
            payload = {
                "order_id": cmd.order_id,
                "return_id": cmd.return_id,
                "customer_id": cmd.customer_id,
                "amount": cmd.amount,
            }
            step.record("wallet", cmd.customer_id, "StoreCreditReturned", payload)
            return ReturnWalletCredited(amount=cmd.amount)

        return await apply_once(self._sessions, context(SERVICE, cmd), change, ReturnWalletCredited)
