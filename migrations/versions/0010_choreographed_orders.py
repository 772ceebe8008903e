"""Orders run by choreography: the saga mode and the deadline of the timeout sweep.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: existing rows get it without a table rewrite.
    op.add_column(
        "orders",
        sa.Column("saga_mode", sa.String(16), nullable=False, server_default="orchestration"),
        schema="orders",
    )
    op.add_column("orders", sa.Column("deadline_at", sa.DateTime(timezone=True)), schema="orders")
    op.create_check_constraint(
        "order_saga_mode",
        "orders",
        "saga_mode IN ('orchestration', 'choreography')",
        schema="orders",
    )
    op.create_index(
        "ix_orders_choreography_open",
        "orders",
        ["deadline_at"],
        schema="orders",
        postgresql_where=sa.text("status = 'PENDING' AND saga_mode = 'choreography'"),
    )


def downgrade() -> None:
    op.drop_index("ix_orders_choreography_open", "orders", schema="orders")
    op.drop_constraint("order_saga_mode", "orders", schema="orders")
    op.drop_column("orders", "deadline_at", schema="orders")
    op.drop_column("orders", "saga_mode", schema="orders")
