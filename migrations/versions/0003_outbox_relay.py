"""Outbox relay and consumers: partitions, relay leases, consumer inbox, order history.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICES = ("orders", "inventory", "payments", "shipping")
PARTITIONS = 64

STATEMENTS = """
CREATE SCHEMA IF NOT EXISTS relay;
CREATE TABLE relay.leases (
    partition   integer PRIMARY KEY,
    owner       varchar(100),
    epoch       bigint NOT NULL DEFAULT 0,
    expires_at  timestamptz NOT NULL DEFAULT 'epoch'
);
INSERT INTO relay.leases (partition) SELECT generate_series(0, 63);
CREATE SCHEMA IF NOT EXISTS readmodels;
CREATE TABLE readmodels.inbox (
    consumer      varchar(100) NOT NULL,
    event_id      uuid NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE TABLE readmodels.order_history (
    event_id        uuid PRIMARY KEY,
    order_id        varchar(64) NOT NULL,
    source          varchar(50) NOT NULL,
    aggregate_type  varchar(100) NOT NULL,
    event_type      varchar(100) NOT NULL,
    payload         jsonb NOT NULL,
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_order_history_order ON readmodels.order_history (order_id, occurred_at)
"""


def _execute_each(sql: str) -> None:
    # asyncpg prepares each statement, and a prepared statement holds only one command.
    for statement in sql.split(";"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    for schema in SERVICES:
        # The relay partition of each row: a stable hash of its aggregate, so all
        # events of one aggregate are handled by one relay instance, in order.
        op.execute(
            f"ALTER TABLE {schema}.outbox ADD COLUMN partition integer NOT NULL "
            f"GENERATED ALWAYS AS ((hashtext(aggregate_type || ':' || aggregate_id) & 2147483647) "
            f"% {PARTITIONS}) STORED"
        )
        op.execute(f"DROP INDEX {schema}.ix_{schema}_outbox_pending")
        op.execute(
            f"CREATE INDEX ix_{schema}_outbox_pending ON {schema}.outbox (partition, seq) "
            f"WHERE status = 'PENDING'"
        )
        op.execute(
            f"CREATE INDEX ix_{schema}_outbox_published ON {schema}.outbox (published_at) "
            f"WHERE status = 'PUBLISHED'"
        )
        op.execute(f"ALTER TABLE {schema}.outbox ADD COLUMN last_error text")
        op.execute(f"ALTER TABLE {schema}.outbox ADD COLUMN next_attempt_at timestamptz")
    _execute_each(STATEMENTS)


def downgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS readmodels CASCADE")
    op.execute("DROP SCHEMA IF EXISTS relay CASCADE")
    for schema in SERVICES:
        op.execute(f"DROP INDEX IF EXISTS {schema}.ix_{schema}_outbox_published")
        op.execute(f"DROP INDEX IF EXISTS {schema}.ix_{schema}_outbox_pending")
        for column in ("partition", "last_error", "next_attempt_at"):
            op.execute(f"ALTER TABLE {schema}.outbox DROP COLUMN IF EXISTS {column}")
        op.execute(
            f"CREATE INDEX ix_{schema}_outbox_pending ON {schema}.outbox (seq) "
            f"WHERE status = 'PENDING'"
        )
