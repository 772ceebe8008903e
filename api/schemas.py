"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from domain.orders import MAX_ITEMS, OrderLine, OrderStatus, PricedLine


class PlaceOrderRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "cust-42",
                    "items": [{"sku": "KB-001", "quantity": 1}],
                    "payment_token": "tok_visa",
                }
            ]
        },
    )

    customer_id: str = Field(min_length=1, max_length=128)
    items: list[OrderLine] = Field(min_length=1, max_length=MAX_ITEMS)
    payment_token: str = Field(min_length=1, max_length=128)

    def fingerprint(self) -> str:
        """Same body, same fingerprint: how a replayed Idempotency-Key is told from a reused one."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class OrderAccepted(BaseModel):
    order_id: str
    status: OrderStatus


class CancelOrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="cancelled by customer", min_length=1, max_length=500)


class CancelAcceptedResponse(BaseModel):
    order_id: str
    status: str = "CANCELLING"


class OrderView(BaseModel):
    order_id: str
    customer_id: str
    status: OrderStatus
    items: list[PricedLine]
    total: int
    currency: str | None
    steps: list[str]
    compensations: list[str]
    failure_reason: str | None
    current_step: str | None = None


class OrderSummary(BaseModel):
    order_id: str
    customer_id: str
    status: OrderStatus
    total: int
    currency: str
    created_at: datetime


class Product(BaseModel):
    sku: str
    name: str
    price: int
    currency: str
    available: int
