"""An index of the outbox rows waiting to retry, for the relay's claim.

The claim skips every row queued behind one of its aggregate that waits to
retry. That probe ran once per candidate row, and on a fresh backlog (no
statistics yet) PostgreSQL answered it by scanning every pending row: a
20,000-event backlog drained at about 220 events/s. Rows waiting to retry are
few, so an index of just those makes the probe cheap whatever the plan.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICES = ("orders", "inventory", "payments", "shipping")


def upgrade() -> None:
    for schema in SERVICES:
        op.execute(
            f"CREATE INDEX ix_{schema}_outbox_retrying ON {schema}.outbox"
            " (aggregate_id, aggregate_type, seq)"
            " WHERE status = 'PENDING' AND next_attempt_at IS NOT NULL"
        )


def downgrade() -> None:
    for schema in SERVICES:
        op.execute(f"DROP INDEX {schema}.ix_{schema}_outbox_retrying")
