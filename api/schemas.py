"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from domain.orders import MAX_ITEMS, MAX_QUANTITY, OrderLine, OrderStatus, PricedLine, SagaMode
from domain.saga import TwoPhaseView

# Printable text only: PostgreSQL refuses NUL in text, and no id or token of
# ours has a control character in it. Refusing them here keeps them from ever
# reaching a query, a workflow id or a log line.
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
PRINTABLE_OR_EMPTY = r"^[^\x00-\x1f\x7f]*$"
CustomerId = Annotated[str, Field(min_length=1, max_length=128, pattern=PRINTABLE)]
MAX_CREDIT = 10_000_000


def _fingerprint(data: dict[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class OrderLineRequest(BaseModel):
    """An order line as a client sends it; domain.OrderLine once validated."""

    # from_attributes: a domain OrderLine is accepted as it is.
    model_config = ConfigDict(extra="forbid", frozen=True, from_attributes=True)

    sku: str = Field(min_length=1, max_length=64, pattern=PRINTABLE)
    quantity: int = Field(ge=1, le=MAX_QUANTITY)

    def to_domain(self) -> OrderLine:
        return OrderLine(sku=self.sku, quantity=self.quantity)


class PlaceOrderRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "cust-42",
                    "items": [{"sku": "KB-001", "quantity": 1}],
                    "payment_token": "tok_visa",
                },
                {
                    "customer_id": "cust-42",
                    "items": [{"sku": "KB-001", "quantity": 1}],
                    "store_credit": 500,
                    "payment_token": "tok_visa",
                },
            ]
        },
    )

    customer_id: CustomerId
    items: list[OrderLineRequest] = Field(min_length=1, max_length=MAX_ITEMS)
    # Required when the card pays anything (the total less store credit); the
    # route checks that, as only the catalog knows the total.
    payment_token: str = Field(default="", max_length=128, pattern=PRINTABLE_OR_EMPTY)
    store_credit: int = Field(
        default=0, ge=0, description="Minor units paid from the customer's wallet"
    )
    mode: SagaMode = Field(
        default=SagaMode.ORCHESTRATION,
        description="orchestration: a Temporal workflow runs the saga; choreography: the "
        "services react to each other's events (card-only orders)",
    )

    def fingerprint(self) -> str:
        """Same body, same fingerprint: how a replayed Idempotency-Key is told from a reused one."""
        data = self.model_dump(mode="json")
        # Absent when unused or the default, so bodies from before these fields
        # existed keep the fingerprint their orders were recorded with.
        if not data["store_credit"]:
            del data["store_credit"]
        if data["mode"] == SagaMode.ORCHESTRATION:
            del data["mode"]
        return _fingerprint(data)


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
    # The two-phase settlement of an order paid partly with store credit: its
    # transaction id, the decision once made, and each participant's vote.
    two_phase: TwoPhaseView | None = None
    mode: SagaMode = SagaMode.ORCHESTRATION
    # Choreography: when the orders service cancels the order if it is still open.
    deadline_at: datetime | None = None


class OrderSummary(BaseModel):
    order_id: str
    customer_id: str
    status: OrderStatus
    total: int
    currency: str
    created_at: datetime
    mode: SagaMode = SagaMode.ORCHESTRATION


class OrderEvent(BaseModel):
    """One event of an order, from the order-history read model."""

    event_id: str
    event_type: str
    aggregate_type: str
    source: str
    payload: dict[str, Any]
    occurred_at: datetime


class Product(BaseModel):
    sku: str
    name: str
    price: int
    currency: str
    available: int


class Wallet(BaseModel):
    customer_id: str
    balance: int
    currency: str
    # The wallet's event stream version this balance reflects (0: no events yet).
    version: int = 0
    # Set when the balance is the wallet as it stood at a past moment (`?at=`).
    as_of: datetime | None = None


class AddCreditRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"amount": 2500}]})

    amount: int = Field(ge=1, le=MAX_CREDIT, description="Minor units to add")

    def fingerprint(self) -> str:
        return _fingerprint(self.model_dump(mode="json"))


class CreditAdded(BaseModel):
    customer_id: str
    amount: int
    balance: int
    currency: str
