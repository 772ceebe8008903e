"""Order returns: the return and its lines (orders), its receipt (shipping), its
restock (inventory) and its refund (payments), one table per service's part.

Each service's role gets its own table, as 0015 grants; the API reads the
returns and their lines (GET /orders/{id}); the audit reads all four. Granted
here by name rather than left to 0015's default privileges, which hold only
when the same role runs every migration.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROWS = "SELECT, INSERT, UPDATE"
GRANTS: tuple[tuple[str, str, str], ...] = (
    ("saga_orders", ROWS, "orders.returns"),
    ("saga_orders", ROWS, "orders.return_lines"),
    ("saga_shipping", ROWS, "shipping.return_receipts"),
    ("saga_inventory", ROWS, "inventory.restocks"),
    ("saga_payments", ROWS, "payments.return_refunds"),
    ("saga_api", "SELECT", "orders.returns"),
    ("saga_api", "SELECT", "orders.return_lines"),
    *(
        ("saga_audit", "SELECT", table)
        for table in (
            "orders.returns",
            "orders.return_lines",
            "shipping.return_receipts",
            "inventory.restocks",
            "payments.return_refunds",
        )
    ),
)


def _created() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


def upgrade() -> None:
    op.create_table(
        "returns",
        sa.Column("return_id", sa.String(64), primary_key=True),
        sa.Column(
            "order_id", sa.String(64), sa.ForeignKey("orders.orders.order_id"), nullable=False
        ),
        sa.Column("workflow_id", sa.String(255), nullable=False, unique=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False, server_default=""),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.Column("card_refunded", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("store_credit_refunded", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("steps", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("compensations", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("failure_reason", sa.Text),
        _created(),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("status IN ('OPEN', 'CLOSED', 'CANCELLED')", name="return_status"),
        sa.CheckConstraint("value >= 0", name="return_value_non_negative"),
        schema="orders",
    )
    op.create_index("ix_returns_order", "returns", ["order_id", "created_at"], schema="orders")
    op.create_table(
        "return_lines",
        sa.Column(
            "return_id",
            sa.String(64),
            sa.ForeignKey("orders.returns.return_id"),
            primary_key=True,
        ),
        sa.Column("sku", sa.String(64), primary_key=True),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price", sa.BigInteger, nullable=False),
        sa.CheckConstraint("quantity > 0", name="return_line_quantity_positive"),
        schema="orders",
    )
    op.create_table(
        "return_receipts",
        sa.Column("return_id", sa.String(64), primary_key=True),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("units", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        _created(),
        sa.Column("rejected_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('RECEIVED', 'REJECTED')", name="return_receipt_status"),
        schema="shipping",
    )
    op.create_table(
        "restocks",
        sa.Column("return_id", sa.String(64), primary_key=True),
        sa.Column("sku", sa.String(64), sa.ForeignKey("inventory.products.sku"), primary_key=True),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        _created(),
        sa.Column("reversed_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("quantity > 0", name="restock_quantity_positive"),
        sa.CheckConstraint("status IN ('RESTOCKED', 'REVERSED')", name="restock_status"),
        schema="inventory",
    )
    op.create_table(
        "return_refunds",
        sa.Column("return_id", sa.String(64), primary_key=True),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.Column("card_amount", sa.BigInteger, nullable=False),
        sa.Column("store_credit_amount", sa.BigInteger, nullable=False),
        sa.Column("provider_refund_id", sa.String(64)),
        sa.Column("wallet_entry_id", UUID(as_uuid=False)),
        _created(),
        sa.CheckConstraint(
            "card_amount >= 0 AND store_credit_amount >= 0", name="return_refund_parts"
        ),
        sa.CheckConstraint("card_amount + store_credit_amount = value", name="return_refund_whole"),
        schema="payments",
    )
    op.create_index("ix_return_refunds_order", "return_refunds", ["order_id"], schema="payments")
    for role, privileges, table in GRANTS:
        op.execute(f"GRANT {privileges} ON {table} TO {role}")


def downgrade() -> None:
    op.drop_table("return_refunds", schema="payments")
    op.drop_table("restocks", schema="inventory")
    op.drop_table("return_receipts", schema="shipping")
    op.drop_table("return_lines", schema="orders")
    op.drop_table("returns", schema="orders")
