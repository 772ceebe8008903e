"""The API claims an order id before starting the order, in either mode.

Without it, an orchestrated POST was accepted when its workflow started,
before its saga wrote the orders row, and a choreographed POST with the same
Idempotency-Key in that window was accepted too. Orders placed before this
migration have no claim; the API still checks their rows.

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


def downgrade() -> None:
    op.drop_table("order_requests", schema="orders")
