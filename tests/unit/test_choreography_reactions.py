"""Which events each service reacts to, and what a handler does with a header it cannot read."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from activities.provider_client import PaymentProviderClient
from activities.provider_retry import ProviderRetry
from choreography.handlers import Reactions
from choreography.service import parse_services, subjects_of
from domain.choreography import CARRIED_HEADER
from messaging.wire import Envelope
from resilience.backoff import Backoff
from resilience.breaker import CircuitBreaker
from security.sealed import Sealer


def test_each_service_listens_to_the_events_before_its_step_and_to_the_cancel():
    assert subjects_of("inventory") == ("events.order.OrderCancelled", "events.order.OrderCreated")
    assert subjects_of("payments") == (
        "events.order.OrderCancelled",
        "events.reservation.StockReserved",
    )
    assert subjects_of("shipping") == (
        "events.order.OrderCancelled",
        "events.payment.PaymentCaptured",
    )
    assert subjects_of("orders") == (
        "events.payment.PaymentFailed",
        "events.reservation.StockReservationFailed",
        "events.shipment.ShipmentCreated",
        "events.shipment.ShipmentFailed",
    )


def test_services_are_parsed_by_name():
    assert parse_services("all") == ["orders", "inventory", "payments", "shipping"]
    assert parse_services("payments, orders,payments") == ["payments", "orders"]
    with pytest.raises(ValueError, match="unknown service billing"):
        parse_services("orders,billing")


def envelope(aggregate: str, event: str, carried: Any) -> Envelope:
    return Envelope(
        event_id="00000000-0000-0000-0000-000000000001",
        source="orders",
        aggregate_type=aggregate,
        aggregate_id="o-1",
        event_type=event,
        payload={"order_id": "o-1"},
        headers={CARRIED_HEADER: carried},
        occurred_at=datetime.now(UTC),
    )


@pytest.fixture
def reactions() -> Reactions:
    # Never called: the handler stops at the header, before any I/O.
    provider = PaymentProviderClient("http://127.0.0.1:9", CircuitBreaker(name="unused"))
    return Reactions(
        provider,
        ProviderRetry(Backoff(0.1, 1.0), 1.0, rng=random.Random(1)),
        Sealer(os.urandom(32)),
    )


async def test_an_unreadable_header_drops_a_forward_step_but_redelivers_an_undo(reactions):
    unreadable = {"order_id": "o-1"}  # a later release's shape, say: fields missing
    handle = reactions.handler("inventory")
    no_connection: Any = None

    # A reservation: dropped (the order's timeout undoes the order).
    assert await handle(no_connection, envelope("order", "OrderCreated", unreadable)) is None
    # A release must end done: the error sends the event back for redelivery.
    with pytest.raises(ValidationError):
        await handle(no_connection, envelope("order", "OrderCancelled", unreadable))
