"""The order as the API and the saga see it."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

MAX_ITEMS = 100
MAX_QUANTITY = 1000


class OrderStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"


class SagaMode(StrEnum):
    """Who runs an order's steps: a Temporal workflow, or the services' event handlers."""

    ORCHESTRATION = "orchestration"
    CHOREOGRAPHY = "choreography"


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


class PricedLine(BaseModel):
    sku: str
    quantity: int
    unit_price: int
    currency: str


class Settlement(StrEnum):
    """How money and stock change: compensating saga steps, or atomically by 2PC."""

    SAGA = "saga"
    TWO_PHASE = "two_phase"


class PlaceOrder(BaseModel):
    """Everything the saga needs to run one order; its workflow id is `order-{order_id}`."""

    order_id: str
    customer_id: str
    items: list[OrderLine]
    # Sealed to the order by the API (security.sealed): the saga passes it on
    # and only the payment activities open it. Clear in sagas started before.
    payment_token: str = ""
    request_hash: str = ""
    # Minor units paid from the customer's wallet; the rest goes to the card.
    store_credit: int = 0
    # None: 2PC when store credit is used (money from two places must move
    # together), the plain saga otherwise.
    settlement: Settlement | None = None
    prepare_timeout_s: float = 10.0

    @property
    def settles_atomically(self) -> bool:
        if self.settlement is not None:
            return self.settlement is Settlement.TWO_PHASE
        return self.store_credit > 0


def workflow_id_for(order_id: str) -> str:
    return f"order-{order_id}"


def order_id_from(workflow_id: str) -> str:
    return workflow_id.removeprefix("order-")
