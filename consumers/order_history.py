"""The order-history read model: every event of an order, as it happened.

Served by `GET /orders/{order_id}/events`. Events that belong to no order
(a wallet top-up) are not projected; the inbox still records them.
"""

from __future__ import annotations

import logging

from nats.js.api import DeliverPolicy
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.consumer import Consumer
from db.tables import order_history
from messaging.wire import SUBJECT_PREFIX, Envelope
from wiring.served import INBOX, OWNERS

log = logging.getLogger(__name__)

CONSUMER_NAME = "order-history"
FILTER_SUBJECT = f"{SUBJECT_PREFIX}.>"
_MAX_ORDER_ID = 64  # orders.orders.order_id

# Aggregates whose id is the order id.
ORDER_AGGREGATES = frozenset({"order", "reservation", "payment", "shipment"})


def order_id_of(envelope: Envelope) -> str | None:
    """The order an event belongs to (wallet events name it in their payload)."""
    value = envelope.payload.get("order_id")
    if isinstance(value, str) and value:
        return value
    return envelope.aggregate_id if envelope.aggregate_type in ORDER_AGGREGATES else None


async def project(conn: AsyncConnection, envelope: Envelope) -> None:
    order_id = order_id_of(envelope)
    if order_id is None:
        return
    if len(order_id) > _MAX_ORDER_ID:
        log.warning(
            "event %s names %r, which cannot be an order id; not projected",
            envelope.event_id,
            order_id[:100],
            extra={"event_id": envelope.event_id},
        )
        return
    # The inbox dedupes per consumer; the row's own key makes a second
    # consumer over this table (a rebuild under a new durable name) harmless.
    await conn.execute(
        insert(order_history)
        .values(
            event_id=envelope.event_id,
            order_id=order_id,
            source=envelope.source,
            aggregate_type=envelope.aggregate_type,
            event_type=envelope.event_type,
            payload=envelope.payload,
            occurred_at=envelope.occurred_at,
        )
        .on_conflict_do_nothing(index_elements=[order_history.c.event_id])
    )


def order_history_consumer(
    name: str = CONSUMER_NAME,
    filter_subject: str = FILTER_SUBJECT,
    deliver_policy: DeliverPolicy = DeliverPolicy.ALL,
) -> Consumer:
    return Consumer(
        name=name,
        filter_subject=filter_subject,
        handler=project,
        deliver_policy=deliver_policy,
        inbox=INBOX,
        owners=OWNERS,
    )
