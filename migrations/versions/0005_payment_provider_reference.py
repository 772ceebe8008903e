"""Payments and card holds record the provider's authorization, for refunds, voids and audits.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: payments taken before the provider existed have no reference.
    op.execute("ALTER TABLE payments.payments ADD COLUMN provider_authorization_id varchar(64)")
    op.execute("ALTER TABLE payments.card_holds ADD COLUMN provider_authorization_id varchar(64)")


def downgrade() -> None:
    op.execute("ALTER TABLE payments.card_holds DROP COLUMN provider_authorization_id")
    op.execute("ALTER TABLE payments.payments DROP COLUMN provider_authorization_id")
