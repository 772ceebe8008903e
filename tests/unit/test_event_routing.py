"""Which events a consumer refuses before acting on them (messaging.wire.misrouting)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from messaging.wire import Envelope, dead_letter_subject_for, misrouting, subject_for
from wiring.services import OWNER_OF_AGGREGATE as OWNERS


def event(source: str, aggregate: str, event_type: str) -> Envelope:
    return Envelope(
        event_id=str(uuid.uuid4()),
        source=source,
        aggregate_type=aggregate,
        aggregate_id="o-1",
        event_type=event_type,
        payload={},
        headers={},
        occurred_at=datetime.now(UTC),
    )


@pytest.mark.parametrize(
    ("source", "aggregate", "event_type"),
    [
        ("orders", "order", "OrderCancelled"),
        ("inventory", "reservation", "StockReserved"),
        ("payments", "wallet", "StoreCreditAdded"),
        ("shipping", "shipment", "ShipmentCreated"),
        ("payments", "test-abc", "Anything"),  # an aggregate of no known service
    ],
)
def test_an_event_on_its_own_subject_from_its_owner_is_accepted(source, aggregate, event_type):
    sent = event(source, aggregate, event_type)
    assert misrouting(subject_for(aggregate, event_type), sent, OWNERS) is None
    assert misrouting(dead_letter_subject_for(aggregate, event_type), sent, OWNERS) is None


def test_an_event_on_another_events_subject_is_refused():
    sent = event("orders", "order", "OrderCancelled")
    reason = misrouting(subject_for("order", "OrderCreated"), sent, OWNERS)
    assert reason == "order.OrderCancelled came on events.order.OrderCreated"


@pytest.mark.parametrize("source", ["payments", "inventory", "shipping", ""])
def test_an_event_of_an_aggregate_its_source_does_not_own_is_refused(source):
    sent = event(source, "order", "OrderCancelled")
    reason = misrouting(subject_for("order", "OrderCancelled"), sent, OWNERS)
    assert reason == f"order events come from orders, not {source!r}"
