"""The choreographed order: which service reacts to which event, and what travels along.

No process holds the flow. Each service knows only the events it reacts to:

    OrderCreated    -> inventory reserves stock   -> StockReserved | StockReservationFailed
    StockReserved   -> payments charges the card  -> PaymentCaptured | PaymentFailed
    PaymentCaptured -> shipping creates shipment  -> ShipmentCreated | ShipmentFailed
    ShipmentCreated -> orders confirms the order  -> OrderConfirmed
    *Failed         -> orders cancels the order   -> OrderCancelled
    OrderCancelled  -> inventory, payments and shipping each undo their own step

A stalled order (a service down, or failing on the order's event every time)
is cancelled by the orders service once its deadline passes, and undone by the same
OrderCancelled. Each undo fences its forward step (db.unit_of_work), so a
service that comes back late and reads the forward event finds it fenced and
does nothing.

Every event of a choreographed order carries `Carried` in its headers: what
the next services need (customer, lines, the card token as far as payments,
the deadline, and once priced, the total). No service reads another's tables,
so the events are the only way it can reach them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel

from domain.activities import Act
from domain.order_saga import StepName
from domain.orders import OrderLine

# The outbox header holding `Carried`; only choreographed orders' events have it.
CARRIED_HEADER = "choreography"

STOCK_RESERVATION_FAILED = "StockReservationFailed"
PAYMENT_FAILED = "PaymentFailed"
SHIPMENT_FAILED = "ShipmentFailed"


class Carried(BaseModel):
    """The order's facts, passed from event to event."""

    order_id: str
    customer_id: str
    items: list[OrderLine]
    # Sealed by the API (security.sealed): the stream holds no card token.
    payment_token: str
    deadline: datetime
    # Known once the orders service priced the order (OrderCreated).
    total: int | None = None
    currency: str | None = None

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.deadline


def correlation_id_for(order_id: str) -> str:
    """What a workflow id is to an orchestrated order: the prefix of its step keys."""
    return f"choreography-{order_id}"


def key_for(order_id: str, step: str) -> str:
    return f"{correlation_id_for(order_id)}:{step}"


@dataclass(frozen=True)
class Reaction:
    """One handler: on `event` of `aggregate`, `service` runs `step`."""

    service: str
    aggregate: str
    event: str
    step: str
    # The event it records when the step is refused; None for undos and the close.
    on_refusal: str | None = None


REACTIONS: tuple[Reaction, ...] = (
    Reaction("inventory", "order", "OrderCreated", Act.RESERVE_STOCK, STOCK_RESERVATION_FAILED),
    Reaction("payments", "reservation", "StockReserved", Act.CHARGE_PAYMENT, PAYMENT_FAILED),
    Reaction("shipping", "payment", "PaymentCaptured", Act.CREATE_SHIPMENT, SHIPMENT_FAILED),
    Reaction("orders", "shipment", "ShipmentCreated", Act.CONFIRM_ORDER),
    Reaction("orders", "reservation", STOCK_RESERVATION_FAILED, Act.CANCEL_ORDER),
    Reaction("orders", "payment", PAYMENT_FAILED, Act.CANCEL_ORDER),
    Reaction("orders", "shipment", SHIPMENT_FAILED, Act.CANCEL_ORDER),
    Reaction("inventory", "order", "OrderCancelled", Act.RELEASE_STOCK),
    Reaction("payments", "order", "OrderCancelled", Act.REFUND_PAYMENT),
    Reaction("shipping", "order", "OrderCancelled", Act.CANCEL_SHIPMENT),
)

# What the order-history read model says was done and undone, for GET /orders/{id}.
STEP_OF_EVENT = {
    "OrderCreated": StepName.CREATE_ORDER,
    "StockReserved": StepName.RESERVE_STOCK,
    "PaymentCaptured": StepName.CHARGE_PAYMENT,
    "ShipmentCreated": StepName.CREATE_SHIPMENT,
    "OrderConfirmed": StepName.CONFIRM_ORDER,
}
UNDO_OF_EVENT = {
    "ShipmentCancelled": Act.CANCEL_SHIPMENT,
    "PaymentRefunded": Act.REFUND_PAYMENT,
    "StockReleased": Act.RELEASE_STOCK,
    "OrderCancelled": Act.CANCEL_ORDER,
}
FORWARD_STEPS = (
    StepName.CREATE_ORDER,
    StepName.RESERVE_STOCK,
    StepName.CHARGE_PAYMENT,
    StepName.CREATE_SHIPMENT,
    StepName.CONFIRM_ORDER,
)


@dataclass(frozen=True)
class Progress:
    """Where an order stands, as far as its events seen so far tell."""

    steps: list[str]
    compensations: list[str]
    waiting_for: str | None  # the first forward step not yet seen done


def progress_of(event_types: Iterable[str]) -> Progress:
    seen = list(event_types)
    done = list(dict.fromkeys(STEP_OF_EVENT[e] for e in seen if e in STEP_OF_EVENT))
    undone = list(dict.fromkeys(UNDO_OF_EVENT[e] for e in seen if e in UNDO_OF_EVENT))
    waiting = next((step for step in FORWARD_STEPS if step not in done), None)
    return Progress(done, undone, waiting)
