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

CHECKS = {
    "order_saga_mode": "saga_mode IN ('orchestration', 'choreography')",
    # The timeout sweep finds a choreographed order by its deadline.
    "order_choreography_deadline": "saga_mode <> 'choreography' OR deadline_at IS NOT NULL",
}


def upgrade() -> None:
    # A constant default: existing rows take it without a table rewrite.
    op.add_column(
        "orders",
        sa.Column("saga_mode", sa.String(16), nullable=False, server_default="orchestration"),
        schema="orders",
    )
    op.add_column("orders", sa.Column("deadline_at", sa.DateTime(timezone=True)), schema="orders")
    # Added NOT VALID, then validated: the scan of existing rows then holds no
    # lock that blocks writes to orders.
    for name, check in CHECKS.items():
        op.execute(f"ALTER TABLE orders.orders ADD CONSTRAINT {name} CHECK ({check}) NOT VALID")
        op.execute(f"ALTER TABLE orders.orders VALIDATE CONSTRAINT {name}")
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_orders_choreography_open",
            "orders",
            ["deadline_at"],
            schema="orders",
            postgresql_where=sa.text("status = 'PENDING' AND saga_mode = 'choreography'"),
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    op.drop_index("ix_orders_choreography_open", "orders", schema="orders")
    for name in CHECKS:
        op.drop_constraint(name, "orders", schema="orders")
    op.drop_column("orders", "deadline_at", schema="orders")
    op.drop_column("orders", "saga_mode", schema="orders")
