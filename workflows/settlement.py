"""Who takes part in an order's two-phase settlement, and what each is asked.

Stock and store credit are XA participants (PostgreSQL prepared transactions);
the card is a TCC participant (a hold, captured or voided).
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.activities import PricedOrder, TwoPhaseAct
    from domain.orders import PlaceOrder
    from domain.two_phase import ParticipantSpec

STOCK, STORE_CREDIT, CARD = "stock", "store_credit", "card"
# Products are shared by every order, a wallet by its customer's orders; the
# card hold locks nothing shared (ParticipantSpec.lock_rank).
LOCK_RANKS = {STOCK: 0, STORE_CREDIT: 1}


def participants_for(order: PlaceOrder, priced: PricedOrder) -> list[ParticipantSpec]:
    lines: dict[str, int] = {}
    for line in order.items:
        lines[line.sku] = lines.get(line.sku, 0) + line.quantity
    specs = [
        ParticipantSpec(
            name=STOCK,
            kind="xa",
            prepare=TwoPhaseAct.PREPARE_STOCK,
            commit=TwoPhaseAct.COMMIT_STOCK,
            abort=TwoPhaseAct.ABORT_STOCK,
            payload={"order_id": order.order_id, "lines": lines},
            lock_rank=LOCK_RANKS[STOCK],
        )
    ]
    if order.store_credit > 0:
        specs.append(
            ParticipantSpec(
                name=STORE_CREDIT,
                kind="xa",
                prepare=TwoPhaseAct.PREPARE_STORE_CREDIT,
                commit=TwoPhaseAct.COMMIT_STORE_CREDIT,
                abort=TwoPhaseAct.ABORT_STORE_CREDIT,
                payload={
                    "order_id": order.order_id,
                    "customer_id": order.customer_id,
                    "amount": order.store_credit,
                },
                lock_rank=LOCK_RANKS[STORE_CREDIT],
            )
        )
    card_amount = priced.total - order.store_credit
    if card_amount > 0:
        specs.append(
            ParticipantSpec(
                name=CARD,
                kind="tcc",
                prepare=TwoPhaseAct.TRY_CARD_HOLD,
                commit=TwoPhaseAct.CONFIRM_CARD_HOLD,
                abort=TwoPhaseAct.CANCEL_CARD_HOLD,
                payload={
                    "order_id": order.order_id,
                    "customer_id": order.customer_id,
                    "amount": card_amount,
                    "currency": priced.currency,
                    "payment_token": order.payment_token,
                },
            )
        )
    return specs
