"""The API claims an order id before starting the order, in either mode.

Without it, an orchestrated POST was accepted when its workflow started,
before its saga wrote the orders row, and a choreographed POST with the same
Idempotency-Key in that window was accepted too. Orders placed before this
migration are claimed for the request they record.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "order_requests",
        sa.Column("order_id", sa.String(64), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("saga_mode", sa.String(16), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema="orders",
    )
    # Orders started without a fingerprint (not through the API) stay unclaimed:
    # the first request for one is then answered from its row, and its claim
    # is set to what the row records.
    op.execute(
        """
        INSERT INTO orders.order_requests (order_id, request_hash, saga_mode, created_at)
        SELECT order_id, request_hash, saga_mode, created_at FROM orders.orders
        WHERE request_hash <> ''
        ON CONFLICT DO NOTHING
        """
    )


def downgrade() -> None:
    op.drop_table("order_requests", schema="orders")
