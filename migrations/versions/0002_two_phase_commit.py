"""Two-phase commit: store-credit wallets, card holds, XA branch outcomes, coordinator log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENTS = """
CREATE TABLE payments.wallets (
    customer_id  varchar(128) PRIMARY KEY,
    balance      bigint NOT NULL,
    currency     varchar(3) NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT wallet_balance_non_negative CHECK (balance >= 0)
);
CREATE TABLE payments.wallet_entries (
    entry_id     uuid PRIMARY KEY,
    customer_id  varchar(128) NOT NULL,
    amount       bigint NOT NULL,
    kind         varchar(20) NOT NULL,
    order_id     varchar(64),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT wallet_entry_kind CHECK (kind IN ('CREDIT', 'DEBIT', 'REFUND'))
);
CREATE INDEX ix_wallet_entries_customer ON payments.wallet_entries (customer_id, created_at);
CREATE INDEX ix_wallet_entries_order ON payments.wallet_entries (order_id);
CREATE TABLE payments.card_holds (
    tx_id        varchar(255) PRIMARY KEY,
    order_id     varchar(64) NOT NULL,
    customer_id  varchar(128) NOT NULL,
    amount       bigint NOT NULL,
    currency     varchar(3) NOT NULL,
    status       varchar(20) NOT NULL,
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at  timestamptz,
    CONSTRAINT card_hold_amount_non_negative CHECK (amount >= 0),
    CONSTRAINT card_hold_status CHECK (status IN ('HELD', 'CAPTURED', 'VOIDED', 'REFUSED'))
);
CREATE INDEX ix_card_holds_held ON payments.card_holds (created_at) WHERE status = 'HELD';
CREATE TABLE inventory.xa_branches (
    gid         varchar(200) PRIMARY KEY,
    tx_id       varchar(255) NOT NULL,
    outcome     varchar(20) NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT xa_branch_outcome CHECK (outcome IN ('COMMITTED', 'ABORTED'))
);
CREATE TABLE payments.xa_branches (
    gid         varchar(200) PRIMARY KEY,
    tx_id       varchar(255) NOT NULL,
    outcome     varchar(20) NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT xa_branch_outcome CHECK (outcome IN ('COMMITTED', 'ABORTED'))
);
CREATE SCHEMA IF NOT EXISTS coordinator;
CREATE TABLE coordinator.decisions (
    tx_id         varchar(255) PRIMARY KEY,
    decision      varchar(10) NOT NULL,
    participants  jsonb NOT NULL,
    votes         jsonb NOT NULL,
    decided_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    CONSTRAINT decision_value CHECK (decision IN ('COMMIT', 'ABORT'))
)
"""


def upgrade() -> None:
    # asyncpg prepares each statement, and a prepared statement holds only one command.
    for statement in STATEMENTS.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS coordinator CASCADE")
    for table in ("payments.xa_branches", "inventory.xa_branches", "payments.card_holds"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("DROP TABLE IF EXISTS payments.wallet_entries")
    op.execute("DROP TABLE IF EXISTS payments.wallets")
