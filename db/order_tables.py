"""The order saga's business tables: each service's part of an order.

The orders service's orders, their lines and the API's claims on order ids;
inventory's products and reservations; payments' charges and card holds;
shipping's shipments; and the order-history read model the consumers build.
Migrations create these; this module only describes them for queries.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from db.kit_tables import created_at
from db.metadata import metadata

orders = Table(
    "orders",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("customer_id", String(128), nullable=False),
    Column("status", String(20), nullable=False),
    Column("total", BigInteger, nullable=False),
    # None for an order cancelled before it was priced (its record all the same).
    Column("currency", String(3)),
    Column("workflow_id", String(255), nullable=False, unique=True),
    Column("request_hash", String(64), nullable=False, server_default=""),
    # The saga's own record, written when it closes, so reads survive the workflow.
    Column("steps", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("compensations", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("failure_reason", Text),
    created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # orchestration: an OrderSaga workflow runs it (workflow_id); choreography:
    # the services' event handlers do, and the orders service cancels it once
    # deadline_at passes (workflow_id then holds its correlation id).
    Column("saga_mode", String(16), nullable=False, server_default="orchestration"),
    Column("deadline_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('PENDING', 'CONFIRMED', 'CANCELLED')", name="order_status"),
    CheckConstraint("saga_mode IN ('orchestration', 'choreography')", name="order_saga_mode"),
    CheckConstraint(
        "saga_mode <> 'choreography' OR deadline_at IS NOT NULL",
        name="order_choreography_deadline",
    ),
    CheckConstraint("total >= 0", name="order_total_non_negative"),
    schema="orders",
)
Index("ix_orders_created", orders.c.created_at.desc())
Index("ix_orders_customer_created", orders.c.customer_id, orders.c.created_at.desc())
# GET /orders?status=, newest first, and its next pages (migration 0014).
Index("ix_orders_status_created", orders.c.status, orders.c.created_at.desc(), orders.c.order_id)
# The orders service's timeout sweep: choreographed orders still open, by deadline.
Index(
    "ix_orders_choreography_open",
    orders.c.deadline_at,
    postgresql_where=text("status = 'PENDING' AND saga_mode = 'choreography'"),
)

# The API's claim on an order id, taken before either mode starts the order:
# two requests racing with one Idempotency-Key (in one mode or in both) find
# one claim, so only one of them is accepted. The orders row comes later (an
# orchestrated order's, from its saga's first step).
order_requests = Table(
    "order_requests",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("saga_mode", String(16), nullable=False),
    created_at(),
    schema="orders",
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", String(64), ForeignKey("orders.orders.order_id"), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("sku", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    CheckConstraint("quantity > 0", name="line_quantity_positive"),
    schema="orders",
)

products = Table(
    "products",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    # Units free to sell: a reservation takes them out, a release puts them back.
    Column("stock", Integer, nullable=False),
    # Every unit ever received (opening stock, set by a trigger when omitted, plus
    # restocks): received - units RESERVED = stock, which the audit checks.
    Column("stock_received", Integer, nullable=False),
    CheckConstraint("stock >= 0", name="stock_non_negative"),
    CheckConstraint("price >= 0", name="price_non_negative"),
    schema="inventory",
)

reservations = Table(
    "reservations",
    metadata,
    Column("reservation_id", UUID(as_uuid=False), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("sku", String(64), ForeignKey("inventory.products.sku"), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    created_at(),
    Column("released_at", DateTime(timezone=True)),
    UniqueConstraint("order_id", "sku", name="reservation_order_sku"),
    CheckConstraint("quantity > 0", name="reservation_quantity_positive"),
    CheckConstraint("status IN ('RESERVED', 'RELEASED')", name="reservation_status"),
    schema="inventory",
)

payments = Table(
    "payments",
    metadata,
    Column("payment_id", UUID(as_uuid=False), primary_key=True),
    Column("order_id", String(64), nullable=False, unique=True),
    Column("customer_id", String(128), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(20), nullable=False),
    Column("refunded_amount", BigInteger, nullable=False, server_default="0"),
    created_at(),
    Column("refunded_at", DateTime(timezone=True)),
    Column("provider_authorization_id", String(64)),
    CheckConstraint("amount >= 0", name="payment_amount_non_negative"),
    CheckConstraint("refunded_amount BETWEEN 0 AND amount", name="payment_refund_bounded"),
    CheckConstraint("status IN ('CAPTURED', 'REFUNDED')", name="payment_status"),
    schema="payments",
)

shipments = Table(
    "shipments",
    metadata,
    Column("shipment_id", UUID(as_uuid=False), primary_key=True),
    Column("order_id", String(64), nullable=False, unique=True),
    Column("customer_id", String(128), nullable=False),
    Column("tracking_number", String(64), nullable=False, unique=True),
    Column("status", String(20), nullable=False),
    created_at(),
    Column("cancelled_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('CREATED', 'CANCELLED')", name="shipment_status"),
    schema="shipping",
)

# A card hold of a 2PC order (payments): the TCC participant's own record.
card_holds = Table(
    "card_holds",
    metadata,
    Column("tx_id", String(255), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    # TRYING from the start of a try until the provider answered (committed
    # before it asks, so a try cut short leaves a row to recover); HELD after
    # try; CAPTURED after confirm; VOIDED after cancel (or as a tombstone when
    # cancel came first); REFUSED when try was declined.
    Column("status", String(20), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    created_at(),
    Column("resolved_at", DateTime(timezone=True)),
    Column("provider_authorization_id", String(64)),
    CheckConstraint("amount >= 0", name="card_hold_amount_non_negative"),
    CheckConstraint(
        "status IN ('TRYING', 'HELD', 'CAPTURED', 'VOIDED', 'REFUSED')", name="card_hold_status"
    ),
    schema="payments",
)
Index(
    "ix_card_holds_open",
    card_holds.c.created_at,
    postgresql_where=card_holds.c.status.in_(("TRYING", "HELD")),
)

# The order-history read model (consumers.order_history): every event of an order.
order_history = Table(
    "order_history",
    metadata,
    Column("event_id", UUID(as_uuid=False), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("source", String(50), nullable=False),
    Column("aggregate_type", String(100), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    schema="readmodels",
)
Index("ix_order_history_order", order_history.c.order_id, order_history.c.occurred_at)
