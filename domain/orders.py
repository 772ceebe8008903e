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


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


class PricedLine(BaseModel):
    sku: str
    quantity: int
    unit_price: int
    currency: str


class PlaceOrder(BaseModel):
    """Everything the saga needs to run one order; its workflow id is `order-{order_id}`."""

    order_id: str
    customer_id: str
    items: list[OrderLine]
    payment_token: str
    request_hash: str = ""


def workflow_id_for(order_id: str) -> str:
    return f"order-{order_id}"


def order_id_from(workflow_id: str) -> str:
    return workflow_id.removeprefix("order-")
