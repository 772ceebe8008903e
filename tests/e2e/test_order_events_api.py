"""GET /orders/{id}/events: a real order's outbox events, published as the relay
publishes them, projected by the order-history consumer and served in order."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.tables import orders, service_tables
from domain.orders import workflow_id_for
from messaging import wire
from tests import factories
from tests.factories import eventually
from wiring.services import SERVICES

pytestmark = pytest.mark.asyncio


async def outbox_envelopes(engine: AsyncEngine, order_id: str) -> list[wire.Envelope]:
    """The order's events in every service's outbox, as the relay wraps them."""
    found = []
    async with engine.connect() as conn:
        for service in SERVICES:
            outbox = service_tables[service].outbox
            rows = await conn.execute(select(outbox).where(outbox.c.aggregate_id == order_id))
            found += [
                wire.Envelope(
                    event_id=str(r.event_id),
                    source=service,
                    aggregate_type=r.aggregate_type,
                    aggregate_id=r.aggregate_id,
                    event_type=r.event_type,
                    payload=r.payload,
                    headers=r.headers,
                    occurred_at=r.created_at,
                )
                for r in rows
            ]
    return found


async def publish(js: JetStreamContext, envelope: wire.Envelope) -> None:
    await js.publish(
        wire.subject_for(envelope.aggregate_type, envelope.event_type),
        envelope.model_dump_json().encode(),
        headers={wire.MSG_ID: envelope.event_id, wire.EVENT_TYPE: envelope.event_type},
    )


async def confirmed_order(api: httpx.AsyncClient, sku: str) -> str:
    body = {
        "customer_id": factories.customer(),
        "items": [{"sku": sku, "quantity": 1}],
        "payment_token": "tok_visa",
    }
    order_id = str((await api.post("/orders", json=body)).json()["order_id"])

    async def status() -> str:
        return str((await api.get(f"/orders/{order_id}")).json()["status"])

    await eventually(status, lambda s: s != "PENDING")
    return order_id


async def test_an_orders_events_are_served_oldest_first(api, engine, js, order_history, product):
    order_id = await confirmed_order(api, await product())
    envelopes = await outbox_envelopes(engine, order_id)
    assert len(envelopes) >= 4  # created, reserved, charged, shipped, confirmed

    # Newest first, and one twice: neither order nor repeats reach the reader.
    for envelope in [*reversed(envelopes), envelopes[0]]:
        await publish(js, envelope)

    async def events() -> list[dict[str, Any]]:
        response = await api.get(f"/orders/{order_id}/events")
        assert response.status_code == 200, response.text
        return list(response.json())

    served = await eventually(events, lambda e: len(e) >= len(envelopes))
    expected = sorted(envelopes, key=lambda e: (e.occurred_at, e.event_id))
    assert [e["event_id"] for e in served] == [e.event_id for e in expected]
    assert served[0]["event_type"] == "OrderCreated"
    assert served[-1]["event_type"] == "OrderConfirmed"
    first = expected[0]
    assert {**served[0], "occurred_at": datetime.fromisoformat(served[0]["occurred_at"])} == {
        "event_id": first.event_id,
        "event_type": first.event_type,
        "aggregate_type": first.aggregate_type,
        "source": first.source,
        "payload": first.payload,
        "occurred_at": first.occurred_at,
    }


async def test_an_order_with_no_events_yet_has_an_empty_history(api, engine):
    order_id = str(uuid.uuid4())
    async with engine.begin() as conn:
        await conn.execute(
            orders.insert().values(
                order_id=order_id,
                customer_id=factories.customer(),
                status="PENDING",
                total=0,
                currency="EUR",
                workflow_id=workflow_id_for(order_id),
            )
        )

    response = await api.get(f"/orders/{order_id}/events")

    assert response.status_code == 200
    assert response.json() == []


@pytest.mark.parametrize("order_id", [str(uuid.uuid4()), "x" * 65])
async def test_events_of_an_unknown_order_are_not_found(api, order_id):
    response = await api.get(f"/orders/{order_id}/events")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "/problems/order-not-found"
    assert problem["instance"] == f"/orders/{order_id}/events"
