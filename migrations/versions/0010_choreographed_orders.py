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
    # Re-runnable: should the concurrent index build below fail, the columns
    # and checks are committed while Alembic still records 0009.
    # A constant default: existing rows take it without a table rewrite.
    op.execute(
        "ALTER TABLE orders.orders ADD COLUMN IF NOT EXISTS saga_mode varchar(16)"
        " NOT NULL DEFAULT 'orchestration'"
    )
    op.execute("ALTER TABLE orders.orders ADD COLUMN IF NOT EXISTS deadline_at timestamptz")
    for name, check in CHECKS.items():
        op.execute(f"ALTER TABLE orders.orders DROP CONSTRAINT IF EXISTS {name}")
        op.execute(f"ALTER TABLE orders.orders ADD CONSTRAINT {name} CHECK ({check}) NOT VALID")
    # Outside the migration's transaction, whose lock on orders blocks every
    # read and write until it commits: validating then scans under a lock
    # that lets writes go on, and the index builds without blocking them.
    with op.get_context().autocommit_block():
        for name in CHECKS:
            op.execute(f"ALTER TABLE orders.orders VALIDATE CONSTRAINT {name}")
        # An invalid index a failed build left behind.
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS orders.ix_orders_choreography_open")
        op.create_index(
            "ix_orders_choreography_open",
            "orders",
            ["deadline_at"],
            schema="orders",
            postgresql_where=sa.text("status = 'PENDING' AND saga_mode = 'choreography'"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    op.drop_index("ix_orders_choreography_open", "orders", schema="orders")
    for name in CHECKS:
        op.drop_constraint(name, "orders", schema="orders")
    op.drop_column("orders", "deadline_at", schema="orders")
    op.drop_column("orders", "saga_mode", schema="orders")
