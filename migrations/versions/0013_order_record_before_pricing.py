"""An order cancelled before it was created still gets its record: no currency then.

A saga cancelled (or refused) before create_order committed left no row, so
its client, told CANCELLED, found the order gone (404) once Temporal had
forgotten the saga. Its cancel now records the order as cancelled; it was
never priced, so its total is 0 and it has no currency.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE orders.orders ALTER COLUMN currency DROP NOT NULL")


def downgrade() -> None:
    # Orders that never were priced have no currency to give back: the default's.
    op.execute("UPDATE orders.orders SET currency = 'EUR' WHERE currency IS NULL")
    op.execute("ALTER TABLE orders.orders ALTER COLUMN currency SET NOT NULL")
