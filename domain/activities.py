"""Activity names and their one-model inputs and results.

Workflows call activities by these names, so they never import the modules
that do database I/O.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from domain.orders import OrderLine, PricedLine, SagaMode


class Act:
    CREATE_ORDER = "create_order"
    CHECK_FRAUD = "check_fraud"
    CONFIRM_ORDER = "confirm_order"
    CANCEL_ORDER = "cancel_order"
    RESERVE_STOCK = "reserve_stock"
    RELEASE_STOCK = "release_stock"
    CHARGE_PAYMENT = "charge_payment"
    REFUND_PAYMENT = "refund_payment"
    CREATE_SHIPMENT = "create_shipment"
    CANCEL_SHIPMENT = "cancel_shipment"


class StepInput(BaseModel):
    """Every step carries the key that makes a retry of it a no-op."""

    idempotency_key: str
    order_id: str
    correlation_id: str
    # Undos only: the key of the step they undo, fenced off (db.unit_of_work).
    fences: str | None = None


class CreateOrder(StepInput):
    customer_id: str
    items: list[OrderLine]
    request_hash: str = ""
    saga_mode: SagaMode = SagaMode.ORCHESTRATION
    # Choreography only: when the orders service gives up on the order.
    deadline_at: datetime | None = None


class PricedOrder(BaseModel):
    order_id: str
    items: list[PricedLine]
    total: int
    currency: str


class CloseOrder(StepInput):
    """Confirm or cancel; a cancel carries the saga's record of what happened."""

    steps: list[str] = []
    compensations: list[str] = []
    failure_reason: str | None = None
    # A cancel that finds no order (cancelled, or refused, before create_order
    # committed) records it as cancelled: its customer, and the request's
    # fingerprint, so a repeat of the same POST is still recognised as such.
    customer_id: str | None = None
    request_hash: str = ""


class OrderClosed(BaseModel):
    order_id: str
    status: str
    # This call closed the order (rather than finding it closed or absent).
    changed: bool = True

    @property
    def undid(self) -> bool:
        return self.changed and self.status == "CANCELLED"


class CheckFraud(StepInput):
    customer_id: str
    total: int
    currency: str


class FraudCleared(BaseModel):
    # The customer's orders in the last minute, this one included: what the rule saw.
    recent_orders: int


class ReserveStock(StepInput):
    items: list[OrderLine]


class StockReserved(BaseModel):
    reservation_id: str
    lines: int


class ReleaseStock(StepInput):
    pass


class StockReleased(BaseModel):
    released_units: int

    @property
    def undid(self) -> bool:
        return self.released_units > 0


class ChargePayment(StepInput):
    customer_id: str
    amount: int
    currency: str
    # Sealed to the order (security.sealed); opened by the activity alone.
    payment_token: str


class PaymentCharged(BaseModel):
    payment_id: str
    amount: int


class RefundPayment(StepInput):
    pass


class PaymentRefunded(BaseModel):
    refunded_amount: int
    # An authorization never captured was voided: no money moved, a hold lifted.
    voided: bool = False

    @property
    def undid(self) -> bool:
        return self.refunded_amount > 0 or self.voided


class CreateShipment(StepInput):
    customer_id: str
    items: list[OrderLine]


class ShipmentCreated(BaseModel):
    shipment_id: str
    tracking_number: str


class CancelShipment(StepInput):
    pass


class ShipmentCancelled(BaseModel):
    cancelled: bool

    @property
    def undid(self) -> bool:
        return self.cancelled


class TwoPhaseAct:
    """The 2PC participants' and coordinator's activities."""

    PREPARE_STOCK = "prepare_stock"
    COMMIT_STOCK = "commit_stock"
    ABORT_STOCK = "abort_stock"
    PREPARE_STORE_CREDIT = "prepare_store_credit"
    COMMIT_STORE_CREDIT = "commit_store_credit"
    ABORT_STORE_CREDIT = "abort_store_credit"
    TRY_CARD_HOLD = "try_card_hold"
    CONFIRM_CARD_HOLD = "confirm_card_hold"
    CANCEL_CARD_HOLD = "cancel_card_hold"
    RECORD_DECISION = "record_decision"
    COMPLETE_TRANSACTION = "complete_transaction"
    REFUND_STORE_CREDIT = "refund_store_credit"
    RESOLVE_TRANSACTION = "resolve_transaction"


class RefundStoreCredit(StepInput):
    pass


class StoreCreditRefunded(BaseModel):
    refunded_amount: int

    @property
    def undid(self) -> bool:
        return self.refunded_amount > 0
