"""An index of each aggregate's pending outbox rows, for the relay's gap check.

The claim counts, for each row it claims, the PENDING rows of its aggregate
before it (a row it could not claim is a gap it must not publish past). Over
the aggregate index that walks every retained row of the aggregate, published
ones too: a customer's wallet keeps a week of them. Pending rows are few, so
an index of just those keeps the count to a probe.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICES = ("orders", "inventory", "payments", "shipping")


def upgrade() -> None:
    for schema in SERVICES:
        op.execute(
            f"CREATE INDEX ix_{schema}_outbox_pending_aggregate ON {schema}.outbox"
            " (aggregate_id, aggregate_type, seq) WHERE status = 'PENDING'"
        )


def downgrade() -> None:
    for schema in SERVICES:
        op.execute(f"DROP INDEX {schema}.ix_{schema}_outbox_pending_aggregate")
