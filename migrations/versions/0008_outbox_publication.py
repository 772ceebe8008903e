"""A publication of inserts into the four outbox tables, for the CDC relay's replication slot.

Creating it needs no particular wal_level; reading it through a slot needs
wal_level=logical (the embedded PostgreSQL and docker-compose set it).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE PUBLICATION saga_outbox FOR TABLE orders.outbox, inventory.outbox,"
        " payments.outbox, shipping.outbox WITH (publish = 'insert')"
    )


def downgrade() -> None:
    op.execute("DROP PUBLICATION saga_outbox")
