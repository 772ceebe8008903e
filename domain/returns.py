"""Order returns: the ReturnSaga's input, progress, steps' names, commands and results.

A return takes back some units of a CONFIRMED order's lines and refunds their
share of what was paid, split between card and store credit in proportion to
how the order was paid (`card_share`). Imports nothing of ours but domain.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from domain.activities import StepInput
from domain.orders import MAX_QUANTITY
from domain.saga import SagaProgress

# A return's id from its order and the client's Idempotency-Key: the same
# request names the same return, and so the same workflow, forever.
RETURN_NAMESPACE = uuid.UUID("a3d0c7e2-6f14-4b0a-9d57-2e8c41f5b903")


def return_id_for(order_id: str, idempotency_key: str) -> str:
    return str(uuid.uuid5(RETURN_NAMESPACE, f"{order_id}:{idempotency_key}"))


def return_workflow_id(return_id: str) -> str:
    return f"return-{return_id}"


class ReturnStatus(StrEnum):
    OPEN = "OPEN"  # the saga is running
    CLOSED = "CLOSED"  # goods back in stock, money refunded
    CANCELLED = "CANCELLED"  # undone: nothing of it remains


class ReturnAct:
    OPEN_RETURN = "open_return"
    CANCEL_RETURN = "cancel_return"
    RECEIVE_RETURN = "receive_return"
    REJECT_RETURN_RECEIPT = "reject_return_receipt"
    RESTOCK_RETURN = "restock_return"
    UNSTOCK_RETURN = "unstock_return"
    REFUND_RETURN_CARD = "refund_return_card"
    CREDIT_RETURN_WALLET = "credit_return_wallet"
    CLOSE_RETURN = "close_return"


class ReturnStep(StrEnum):
    """Step names: with the workflow id, each step's idempotency key. Never rename one."""

    OPEN = "open_return"
    RECEIVE = "receive_return"
    RESTOCK = "restock_return"
    REFUND_CARD = "refund_return_card"
    CREDIT_WALLET = "credit_return_wallet"
    CLOSE = "close_return"


class ReturnLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


class StartReturn(BaseModel):
    """The ReturnSaga's input; its workflow id is `return-{return_id}`."""

    return_id: str
    order_id: str
    customer_id: str
    lines: list[ReturnLine]
    request_hash: str = ""


class ReturnState(SagaProgress):
    return_id: str
    order_id: str
    value: int = 0
    card_refunded: int = 0
    store_credit_refunded: int = 0


class ReturnInput(StepInput):
    """Every return step's input: the order's id (StepInput), and the return's."""

    return_id: str


class OpenReturn(ReturnInput):
    customer_id: str
    lines: list[ReturnLine]
    request_hash: str = ""


class ReturnOpened(BaseModel):
    # What the returned lines cost, and what the order cost: the refund's measure.
    value: int
    order_total: int
    currency: str


class GoodsReturn(ReturnInput):
    """Receive or restock the lines; also the undo of either (then `lines` is empty)."""

    lines: list[ReturnLine] = []


class GoodsMoved(BaseModel):
    units: int

    @property
    def undid(self) -> bool:
        return self.units > 0


class RefundReturnCard(ReturnInput):
    customer_id: str
    value: int
    order_total: int


class ReturnCardRefunded(BaseModel):
    card_amount: int
    # The rest of the value: what the wallet is credited next.
    store_credit_due: int


class CreditReturnWallet(ReturnInput):
    customer_id: str
    amount: int


class ReturnWalletCredited(BaseModel):
    amount: int


class CloseReturn(ReturnInput):
    steps: list[str] = []
    compensations: list[str] = []
    failure_reason: str | None = None
    card_refunded: int = 0
    store_credit_refunded: int = 0


class ReturnClosed(BaseModel):
    status: str
    changed: bool = True

    @property
    def undid(self) -> bool:
        return self.changed and self.status == ReturnStatus.CANCELLED


def card_share(value_before: int, value: int, order_total: int, card_paid: int) -> int:
    """The card's part of a return worth `value`, after returns worth `value_before`.

    The card pays back in proportion to what it paid, counted over all the
    order's returns (rounded down) so that their card parts never add up to
    more than the card paid, and all of the order returned gives back exactly
    what each side paid. The rest of each return is store credit.
    """
    if order_total <= 0:
        return 0
    before = value_before * card_paid // order_total
    after = (value_before + value) * card_paid // order_total
    return after - before
