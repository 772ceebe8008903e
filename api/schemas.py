"""Request and response bodies of the HTTP API, and the types their fields are checked by.

What a request may carry is what the OpenAPI schema says, nothing looser:
pydantic's lax mode would take `"1"`, `1.0` or `true` for an integer and a
number (Unix time) for a `date-time`; the types here refuse them.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from domain.order_saga import TwoPhaseView
from domain.orders import MAX_ITEMS, MAX_QUANTITY, OrderLine, OrderStatus, PricedLine, SagaMode

# Printable text only: PostgreSQL refuses NUL in text, and no id or token of
# ours has a control character in it. Refusing them here keeps them from ever
# reaching a query, a workflow id or a log line.
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
# An id or a token is printable and has no blank at either end: " cust-42"
# would be another customer than "cust-42", and " " no customer at all.
_EDGE = r"[^\s\x00-\x1f\x7f]"
ID_PATTERN = rf"^{_EDGE}(?:[^\x00-\x1f\x7f]*{_EDGE})?$"
ID_OR_EMPTY = rf"^(?:{_EDGE}(?:[^\x00-\x1f\x7f]*{_EDGE})?)?$"
CustomerId = Annotated[str, Field(min_length=1, max_length=128, pattern=ID_PATTERN)]
# What a client is told when a text field misses its pattern (the regex itself says little).
PATTERN_MESSAGES = {
    PRINTABLE: "String should have no control character",
    ID_PATTERN: "String should be printable, with no blank at either end",
    ID_OR_EMPTY: "String should be empty, or printable with no blank at either end",
}
MAX_CREDIT = 10_000_000
# The largest integer JSON carries exactly (RFC 7493, I-JSON), well within
# the bigint money is kept in; FastAPI publishes bounds as floats, and this
# one survives that unrounded.
MAX_MINOR_UNITS = 2**53 - 1

# RFC 3339's date-time (section 5.6), which OpenAPI's `format: date-time`
# means: seconds and an offset required; T and Z in either case.
RFC3339 = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$"
_RFC3339 = re.compile(RFC3339, re.ASCII)
# How an integer is written in a query string: JSON's digits, nothing else.
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)", re.ASCII)


def _rfc3339_text(value: object) -> object:
    if isinstance(value, str) and _RFC3339.fullmatch(value):
        return value
    raise PydanticCustomError(
        "rfc3339",
        "Input should be an RFC 3339 date-time with an offset,"
        " like 2026-12-01T10:00:00Z or 2026-12-01T12:00:00+02:00",
    )


def _within_utc_years(value: datetime) -> datetime:
    # Year 1 at +01:00 is before the year 1 in UTC: no database can take it.
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime_range", "Input should be within the years 1 to 9999 in UTC"
        ) from None
    return value


def _integer_text(value: object) -> object:
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return value
    raise PydanticCustomError("int_parsing", "Input should be an integer in digits, like 50")


Rfc3339Time = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339_text),
    AfterValidator(_within_utc_years),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": RFC3339}),
]
# A query string's integer: "5", never "5.0", " 5", "+5" or "5_0". Bounds go
# before it (`Annotated[int, Field(ge=1), QUERY_INTEGER, Query()]`): given
# in Query(), after the check, they fall out of the published schema.
QUERY_INTEGER = BeforeValidator(_integer_text)


def fingerprint_of(data: dict[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class OrderLineRequest(BaseModel):
    """An order line as a client sends it; domain.OrderLine once validated."""

    # from_attributes: a domain OrderLine is accepted as it is.
    model_config = ConfigDict(extra="forbid", frozen=True, from_attributes=True)

    sku: str = Field(min_length=1, max_length=64, pattern=ID_PATTERN)
    quantity: StrictInt = Field(ge=1, le=MAX_QUANTITY)

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
    payment_token: str = Field(default="", max_length=128, pattern=ID_OR_EMPTY)
    store_credit: StrictInt = Field(
        default=0,
        ge=0,
        le=MAX_MINOR_UNITS,
        description="Minor units paid from the customer's wallet",
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
        return fingerprint_of(data)


class OrderAccepted(BaseModel):
    order_id: str
    status: OrderStatus


class CancelOrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "late"}]})

    # Printable: the reason becomes the order's failure_reason, a text column.
    reason: str = Field(
        default="cancelled by customer", min_length=1, max_length=500, pattern=PRINTABLE
    )


class CancelAcceptedResponse(BaseModel):
    order_id: str
    status: str = "CANCELLING"


class ReturnLineView(BaseModel):
    sku: str
    quantity: int
    unit_price: int


class ReturnView(BaseModel):
    """A return of an order (its ReturnSaga): refunded amounts are set when it closes."""

    return_id: str
    order_id: str
    status: str  # OPEN, CLOSED or CANCELLED
    lines: list[ReturnLineView]
    value: int
    card_refunded: int
    store_credit_refunded: int
    failure_reason: str | None
    created_at: datetime


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
    # A CONFIRMED order's returns, oldest first (docs/returns.md).
    returns: list[ReturnView] = Field(default_factory=list)


class OrderSummary(BaseModel):
    order_id: str
    customer_id: str
    status: OrderStatus
    total: int
    currency: str | None  # None: cancelled before it was priced
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

    amount: StrictInt = Field(ge=1, le=MAX_CREDIT, description="Minor units to add")

    def fingerprint(self) -> str:
        return fingerprint_of(self.model_dump(mode="json"))


class CreditAdded(BaseModel):
    customer_id: str
    amount: int
    balance: int
    currency: str


class CodecPayloads(BaseModel):
    """What the Web UI sends the codec: `{"payloads": [...]}`; protobuf checks each payload."""

    model_config = ConfigDict(extra="forbid")

    payloads: list[dict[str, Any]] = Field(
        description="temporal.api.common.v1.Payload in protobuf's JSON mapping"
        ' ({"metadata": {...}, "data": "<base64>"})'
    )
