"""The store-credit wallet becomes an event stream; balance and ledger become its projections.

`payments.wallet_events` is the source of truth: one row per event, numbered
per wallet (the primary key (customer_id, version) is the optimistic
concurrency check: two writers of the same version cannot both commit).
`payments.wallets` stays as the balance projection, now with the version it
reflects; `payments.wallet_snapshots` keeps a folded state every N events. The
old ledger table becomes a view over the stream, so what read it (the audit,
the saga's refund) reads on unchanged.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EVENTS = """
CREATE TABLE payments.wallet_events (
    customer_id  varchar(128) NOT NULL,
    version      bigint NOT NULL,
    event_type   varchar(30) NOT NULL,
    amount       bigint NOT NULL,
    order_id     varchar(64),
    entry_id     uuid NOT NULL,
    occurred_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (customer_id, version),
    CONSTRAINT wallet_event_entry UNIQUE (entry_id),
    CONSTRAINT wallet_event_version_positive CHECK (version > 0),
    CONSTRAINT wallet_event_amount_non_negative CHECK (amount >= 0),
    CONSTRAINT wallet_event_type CHECK (
        event_type IN ('AccountOpened', 'Credited', 'Debited', 'DebitReversed'))
)
"""
_EVENTS_BY_ORDER = "CREATE INDEX ix_wallet_events_order ON payments.wallet_events (order_id)"
_EVENTS_BY_TIME = (
    "CREATE INDEX ix_wallet_events_time ON payments.wallet_events (customer_id, occurred_at)"
)
_SNAPSHOTS = """
CREATE TABLE payments.wallet_snapshots (
    customer_id  varchar(128) NOT NULL,
    version      bigint NOT NULL,
    balance      bigint NOT NULL,
    taken_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (customer_id, version)
)
"""
# Each wallet opens at version 1; its old ledger entries follow in time order.
_BACKFILL_OPENED = """
INSERT INTO payments.wallet_events (customer_id, version, event_type, amount, entry_id, occurred_at)
SELECT w.customer_id, 1, 'AccountOpened', 0, md5('opened:' || w.customer_id)::uuid,
       coalesce((SELECT min(e.created_at) FROM payments.wallet_entries e
                 WHERE e.customer_id = w.customer_id), w.updated_at)
FROM payments.wallets w
"""
_BACKFILL_ENTRIES = """
INSERT INTO payments.wallet_events
    (customer_id, version, event_type, amount, order_id, entry_id, occurred_at)
SELECT e.customer_id,
       1 + row_number() OVER (PARTITION BY e.customer_id ORDER BY e.created_at, e.entry_id),
       CASE e.kind WHEN 'CREDIT' THEN 'Credited' WHEN 'DEBIT' THEN 'Debited'
                   ELSE 'DebitReversed' END,
       abs(e.amount), e.order_id, e.entry_id, e.created_at
FROM payments.wallet_entries e
"""
# Wallets written with a balance but not (all) of it in the ledger: what the
# ledger does not explain becomes an opening credit, so the fold keeps the money.
_BACKFILL_UNEXPLAINED = """
INSERT INTO payments.wallet_events
    (customer_id, version, event_type, amount, entry_id, occurred_at)
SELECT w.customer_id,
       2 + (SELECT count(*) FROM payments.wallet_entries e WHERE e.customer_id = w.customer_id),
       'Credited', w.balance - coalesce(l.net, 0), md5('unexplained:' || w.customer_id)::uuid,
       w.updated_at
FROM payments.wallets w
LEFT JOIN (SELECT customer_id, sum(amount) AS net FROM payments.wallet_entries
           GROUP BY customer_id) l ON l.customer_id = w.customer_id
WHERE w.balance > coalesce(l.net, 0)
"""
_PROJECTION_VERSION = """
UPDATE payments.wallets w SET version = coalesce(
    (SELECT max(version) FROM payments.wallet_events v WHERE v.customer_id = w.customer_id), 0)
"""
_LEDGER_VIEW = """
CREATE VIEW payments.wallet_entries AS
SELECT entry_id, customer_id,
       CASE event_type WHEN 'Debited' THEN -amount ELSE amount END AS amount,
       CASE event_type WHEN 'Credited' THEN 'CREDIT' WHEN 'Debited' THEN 'DEBIT'
                       ELSE 'REFUND' END AS kind,
       order_id, occurred_at AS created_at
FROM payments.wallet_events
WHERE event_type <> 'AccountOpened'
"""


def upgrade() -> None:
    for statement in (_EVENTS, _EVENTS_BY_ORDER, _EVENTS_BY_TIME, _SNAPSHOTS):
        op.execute(statement)
    op.execute("ALTER TABLE payments.wallets ADD COLUMN version bigint NOT NULL DEFAULT 0")
    for statement in (
        _BACKFILL_OPENED,
        _BACKFILL_ENTRIES,
        _BACKFILL_UNEXPLAINED,
        _PROJECTION_VERSION,
    ):
        op.execute(statement)
    op.execute("DROP TABLE payments.wallet_entries")
    op.execute(_LEDGER_VIEW)


def downgrade() -> None:
    op.execute("ALTER VIEW payments.wallet_entries RENAME TO wallet_entries_view")
    op.execute(
        """
        CREATE TABLE payments.wallet_entries (
            entry_id uuid PRIMARY KEY, customer_id varchar(128) NOT NULL,
            amount bigint NOT NULL, kind varchar(20) NOT NULL, order_id varchar(64),
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT wallet_entry_kind CHECK (kind IN ('CREDIT', 'DEBIT', 'REFUND')))
        """
    )
    op.execute("INSERT INTO payments.wallet_entries SELECT * FROM payments.wallet_entries_view")
    op.execute("DROP VIEW payments.wallet_entries_view")
    op.execute(
        "CREATE INDEX ix_wallet_entries_customer"
        " ON payments.wallet_entries (customer_id, created_at)"
    )
    op.execute("CREATE INDEX ix_wallet_entries_order ON payments.wallet_entries (order_id)")
    op.execute("DROP TABLE payments.wallet_snapshots")
    op.execute("DROP TABLE payments.wallet_events")
    op.execute("ALTER TABLE payments.wallets DROP COLUMN version")
