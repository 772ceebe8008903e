"""Order returns (migration 0018): each service's part of a ReturnSaga.

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
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from db.kit_tables import created_at
from db.metadata import metadata

returns = Table(
    "returns",
    metadata,
    Column("return_id", String(64), primary_key=True),
    Column("order_id", String(64), ForeignKey("orders.orders.order_id"), nullable=False),
    Column("workflow_id", String(255), nullable=False, unique=True),
    Column("status", String(20), nullable=False),
    Column("request_hash", String(64), nullable=False, server_default=""),
    # What the returned lines cost at the order's prices; refunded as card + store credit.
    Column("value", BigInteger, nullable=False),
    Column("card_refunded", BigInteger, nullable=False, server_default="0"),
    Column("store_credit_refunded", BigInteger, nullable=False, server_default="0"),
    Column("steps", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("compensations", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("failure_reason", Text),
    created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("status IN ('OPEN', 'CLOSED', 'CANCELLED')", name="return_status"),
    CheckConstraint("value >= 0", name="return_value_non_negative"),
    schema="orders",
)
Index("ix_returns_order", returns.c.order_id, returns.c.created_at)

return_lines = Table(
    "return_lines",
    metadata,
    Column("return_id", String(64), ForeignKey("orders.returns.return_id"), primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", BigInteger, nullable=False),
    CheckConstraint("quantity > 0", name="return_line_quantity_positive"),
    schema="orders",
)

return_receipts = Table(
    "return_receipts",
    metadata,
    Column("return_id", String(64), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("units", Integer, nullable=False),
    # RECEIVED: the goods are at the warehouse; REJECTED: the return was undone.
    Column("status", String(20), nullable=False),
    created_at(),
    Column("rejected_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('RECEIVED', 'REJECTED')", name="return_receipt_status"),
    schema="shipping",
)

restocks = Table(
    "restocks",
    metadata,
    Column("return_id", String(64), primary_key=True),
    Column("sku", String(64), ForeignKey("inventory.products.sku"), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    # RESTOCKED: the units are back on the shelf; REVERSED: taken out again (undone).
    Column("status", String(20), nullable=False),
    created_at(),
    Column("reversed_at", DateTime(timezone=True)),
    CheckConstraint("quantity > 0", name="restock_quantity_positive"),
    CheckConstraint("status IN ('RESTOCKED', 'REVERSED')", name="restock_status"),
    schema="inventory",
)

return_refunds = Table(
    "return_refunds",
    metadata,
    Column("return_id", String(64), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("value", BigInteger, nullable=False),
    Column("card_amount", BigInteger, nullable=False),
    Column("store_credit_amount", BigInteger, nullable=False),
    Column("provider_refund_id", String(64)),
    # The wallet event that credited store_credit_amount, once it has.
    Column("wallet_entry_id", UUID(as_uuid=False)),
    created_at(),
    CheckConstraint("card_amount >= 0 AND store_credit_amount >= 0", name="return_refund_parts"),
    CheckConstraint("card_amount + store_credit_amount = value", name="return_refund_whole"),
    schema="payments",
)
Index("ix_return_refunds_order", return_refunds.c.order_id)
