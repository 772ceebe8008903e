"""Bulkheads: which task queue serves each activity.

Each downstream (inventory, payments, shipping) has a task queue of its own,
served by its own worker with its own activity slots, database pool and HTTP
pool. A stalled payment provider then fills the payments worker's slots and
nothing else: inventory and shipping steps keep their own. Workflows and the
order service's own activities stay on the base queue.

Queue names derive from the workflow's own task queue (``orders`` →
``orders-payments``), so a deployment, or a test, with another base queue
gets its own bulkheads without configuring each.
"""

from __future__ import annotations

from enum import StrEnum

from domain.activities import Act, TwoPhaseAct
from domain.returns import ReturnAct


class Bulkhead(StrEnum):
    ORDERS = "orders"  # the base queue: workflows, orders, the 2PC log
    INVENTORY = "inventory"
    PAYMENTS = "payments"
    SHIPPING = "shipping"


BULKHEAD_OF: dict[str, Bulkhead] = {
    Act.CREATE_ORDER: Bulkhead.ORDERS,
    Act.CHECK_FRAUD: Bulkhead.ORDERS,
    Act.CONFIRM_ORDER: Bulkhead.ORDERS,
    Act.CANCEL_ORDER: Bulkhead.ORDERS,
    TwoPhaseAct.RECORD_DECISION: Bulkhead.ORDERS,
    TwoPhaseAct.COMPLETE_TRANSACTION: Bulkhead.ORDERS,
    TwoPhaseAct.RESOLVE_TRANSACTION: Bulkhead.ORDERS,
    Act.RESERVE_STOCK: Bulkhead.INVENTORY,
    Act.RELEASE_STOCK: Bulkhead.INVENTORY,
    TwoPhaseAct.PREPARE_STOCK: Bulkhead.INVENTORY,
    TwoPhaseAct.COMMIT_STOCK: Bulkhead.INVENTORY,
    TwoPhaseAct.ABORT_STOCK: Bulkhead.INVENTORY,
    Act.CHARGE_PAYMENT: Bulkhead.PAYMENTS,
    Act.REFUND_PAYMENT: Bulkhead.PAYMENTS,
    TwoPhaseAct.TRY_CARD_HOLD: Bulkhead.PAYMENTS,
    TwoPhaseAct.CONFIRM_CARD_HOLD: Bulkhead.PAYMENTS,
    TwoPhaseAct.CANCEL_CARD_HOLD: Bulkhead.PAYMENTS,
    TwoPhaseAct.PREPARE_STORE_CREDIT: Bulkhead.PAYMENTS,
    TwoPhaseAct.COMMIT_STORE_CREDIT: Bulkhead.PAYMENTS,
    TwoPhaseAct.ABORT_STORE_CREDIT: Bulkhead.PAYMENTS,
    TwoPhaseAct.REFUND_STORE_CREDIT: Bulkhead.PAYMENTS,
    Act.CREATE_SHIPMENT: Bulkhead.SHIPPING,
    Act.CANCEL_SHIPMENT: Bulkhead.SHIPPING,
    ReturnAct.OPEN_RETURN: Bulkhead.ORDERS,
    ReturnAct.CANCEL_RETURN: Bulkhead.ORDERS,
    ReturnAct.CLOSE_RETURN: Bulkhead.ORDERS,
    ReturnAct.RECEIVE_RETURN: Bulkhead.SHIPPING,
    ReturnAct.REJECT_RETURN_RECEIPT: Bulkhead.SHIPPING,
    ReturnAct.RESTOCK_RETURN: Bulkhead.INVENTORY,
    ReturnAct.UNSTOCK_RETURN: Bulkhead.INVENTORY,
    ReturnAct.REFUND_RETURN_CARD: Bulkhead.PAYMENTS,
    ReturnAct.CREDIT_RETURN_WALLET: Bulkhead.PAYMENTS,
}


# Local steps that release what forward steps hold: undos, and a decided 2PC's
# log and phase 2. They get a concurrency limit of their own in each service
# (worker.local_bulkheads), so prepares waiting on a hot row cannot keep out
# the commit that would free it, nor a burst of new orders an undo.
FINISHING: frozenset[str] = frozenset(
    {
        Act.CANCEL_ORDER,
        Act.RELEASE_STOCK,
        Act.CANCEL_SHIPMENT,
        ReturnAct.CANCEL_RETURN,
        ReturnAct.REJECT_RETURN_RECEIPT,
        ReturnAct.UNSTOCK_RETURN,
        TwoPhaseAct.REFUND_STORE_CREDIT,
        TwoPhaseAct.COMMIT_STOCK,
        TwoPhaseAct.ABORT_STOCK,
        TwoPhaseAct.COMMIT_STORE_CREDIT,
        TwoPhaseAct.ABORT_STORE_CREDIT,
        TwoPhaseAct.RECORD_DECISION,
        TwoPhaseAct.COMPLETE_TRANSACTION,
    }
)


def queue_name(base: str, bulkhead: Bulkhead) -> str:
    return base if bulkhead is Bulkhead.ORDERS else f"{base}-{bulkhead.value}"


def queue_for(activity: str, base: str) -> str:
    """The task queue of `activity` for workflows on `base`; unknown names stay on base."""
    return queue_name(base, BULKHEAD_OF.get(activity, Bulkhead.ORDERS))
