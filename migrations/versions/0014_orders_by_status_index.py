"""An index for listing orders by status, newest first.

`GET /orders?status=` filtered the whole table by status before sorting it
(the only index by time does not know the status): a read that cost a scan
of every order ever placed. This index answers the list and each next page
(a keyset cursor on created_at, order_id) in the listing's own order.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_orders_status_created"


def upgrade() -> None:
    # Outside the migration's transaction, so the build does not block writes
    # to orders (a plain CREATE INDEX would hold them until it commits).
    with op.get_context().autocommit_block():
        # An invalid index a failed build left behind.
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS orders.{INDEX}")
        op.create_index(
            INDEX,
            "orders",
            ["status", sa.text("created_at DESC"), "order_id"],
            schema="orders",
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    op.drop_index(INDEX, "orders", schema="orders")
