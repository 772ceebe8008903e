"""A card try records its intent (TRYING) before it authorizes at the provider.

Before, the try authorized first and inserted its row after, so a worker that
died in between left an authorization no row named, and recovery, which knows
only the transaction id, wrote a tombstone without the order and never asked
the provider. The open-hold index now covers TRYING rows too: the recovery
sweep and the audit look for both.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _statuses(statuses: str) -> None:
    op.execute("ALTER TABLE payments.card_holds DROP CONSTRAINT card_hold_status")
    op.execute(
        "ALTER TABLE payments.card_holds ADD CONSTRAINT card_hold_status"
        f" CHECK (status IN ({statuses}))"
    )


def upgrade() -> None:
    _statuses("'TRYING', 'HELD', 'CAPTURED', 'VOIDED', 'REFUSED'")
    op.execute("DROP INDEX payments.ix_card_holds_held")
    op.execute(
        "CREATE INDEX ix_card_holds_open ON payments.card_holds (created_at)"
        " WHERE status IN ('TRYING', 'HELD')"
    )


def downgrade() -> None:
    # The previous release knows no TRYING. Such a try is aborted: a retry of
    # it, or a cancel (the row names the order), then looks for and voids what
    # it authorized, as that release does; with neither, the audit's
    # provider-money check shows what is left.
    op.execute(
        "UPDATE payments.card_holds SET status = 'VOIDED', resolved_at = now()"
        " WHERE status = 'TRYING'"
    )
    op.execute("DROP INDEX payments.ix_card_holds_open")
    op.execute(
        "CREATE INDEX ix_card_holds_held ON payments.card_holds (created_at) WHERE status = 'HELD'"
    )
    _statuses("'HELD', 'CAPTURED', 'VOIDED', 'REFUSED'")
