"""Service schemas: orders, inventory, payments, shipping, each with outbox and idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICES = ("orders", "inventory", "payments", "shipping")


def _service_plumbing(schema: str) -> str:
    return f"""
    CREATE TABLE {schema}.outbox (
        event_id        uuid PRIMARY KEY,
        seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        aggregate_type  varchar(100) NOT NULL,
        aggregate_id    varchar(255) NOT NULL,
        event_type      varchar(100) NOT NULL,
        payload         jsonb NOT NULL,
        headers         jsonb NOT NULL DEFAULT '{{}}'::jsonb,
        status          varchar(20) NOT NULL DEFAULT 'PENDING',
        attempts        integer NOT NULL DEFAULT 0,
        created_at      timestamptz NOT NULL DEFAULT now(),
        published_at    timestamptz,
        CONSTRAINT outbox_status CHECK (status IN ('PENDING', 'PUBLISHED', 'FAILED'))
    );
    CREATE INDEX ix_{schema}_outbox_pending ON {schema}.outbox (seq) WHERE status = 'PENDING';
    CREATE INDEX ix_{schema}_outbox_aggregate ON {schema}.outbox (aggregate_id, seq);
    CREATE TABLE {schema}.idempotency_keys (
        key         varchar(255) PRIMARY KEY,
        result      jsonb,
        created_at  timestamptz NOT NULL DEFAULT now()
    );
    """


BUSINESS_TABLES = """
CREATE TABLE orders.orders (
    order_id        varchar(64) PRIMARY KEY,
    customer_id     varchar(128) NOT NULL,
    status          varchar(20) NOT NULL,
    total           bigint NOT NULL,
    currency        varchar(3) NOT NULL,
    workflow_id     varchar(255) NOT NULL UNIQUE,
    request_hash    varchar(64) NOT NULL DEFAULT '',
    steps           jsonb NOT NULL DEFAULT '[]'::jsonb,
    compensations   jsonb NOT NULL DEFAULT '[]'::jsonb,
    failure_reason  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT order_status CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    CONSTRAINT order_total_non_negative CHECK (total >= 0)
);
CREATE INDEX ix_orders_created ON orders.orders (created_at DESC);
CREATE INDEX ix_orders_customer_created ON orders.orders (customer_id, created_at DESC);

CREATE TABLE orders.order_lines (
    order_id    varchar(64) NOT NULL REFERENCES orders.orders (order_id),
    line_no     integer NOT NULL,
    sku         varchar(64) NOT NULL,
    quantity    integer NOT NULL,
    unit_price  bigint NOT NULL,
    currency    varchar(3) NOT NULL,
    PRIMARY KEY (order_id, line_no),
    CONSTRAINT line_quantity_positive CHECK (quantity > 0)
);

CREATE TABLE inventory.products (
    sku       varchar(64) PRIMARY KEY,
    name      varchar(200) NOT NULL,
    price     bigint NOT NULL,
    currency  varchar(3) NOT NULL,
    stock     integer NOT NULL,
    CONSTRAINT stock_non_negative CHECK (stock >= 0),
    CONSTRAINT price_non_negative CHECK (price >= 0)
);

CREATE TABLE inventory.reservations (
    reservation_id  uuid PRIMARY KEY,
    order_id        varchar(64) NOT NULL,
    sku             varchar(64) NOT NULL REFERENCES inventory.products (sku),
    quantity        integer NOT NULL,
    status          varchar(20) NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    released_at     timestamptz,
    CONSTRAINT reservation_order_sku UNIQUE (order_id, sku),
    CONSTRAINT reservation_quantity_positive CHECK (quantity > 0),
    CONSTRAINT reservation_status CHECK (status IN ('RESERVED', 'RELEASED'))
);

CREATE TABLE payments.payments (
    payment_id       uuid PRIMARY KEY,
    order_id         varchar(64) NOT NULL UNIQUE,
    customer_id      varchar(128) NOT NULL,
    amount           bigint NOT NULL,
    currency         varchar(3) NOT NULL,
    status           varchar(20) NOT NULL,
    refunded_amount  bigint NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    refunded_at      timestamptz,
    CONSTRAINT payment_amount_non_negative CHECK (amount >= 0),
    CONSTRAINT payment_refund_bounded CHECK (refunded_amount BETWEEN 0 AND amount),
    CONSTRAINT payment_status CHECK (status IN ('CAPTURED', 'REFUNDED'))
);

CREATE TABLE shipping.shipments (
    shipment_id      uuid PRIMARY KEY,
    order_id         varchar(64) NOT NULL UNIQUE,
    customer_id      varchar(128) NOT NULL,
    tracking_number  varchar(64) NOT NULL UNIQUE,
    status           varchar(20) NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    cancelled_at     timestamptz,
    CONSTRAINT shipment_status CHECK (status IN ('CREATED', 'CANCELLED'))
);
"""


def _execute_each(sql: str) -> None:
    # asyncpg prepares each statement, and a prepared statement holds only one command.
    for statement in sql.split(";"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    for schema in SERVICES:
        op.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        _execute_each(_service_plumbing(schema))
    _execute_each(BUSINESS_TABLES)


def downgrade() -> None:
    for schema in reversed(SERVICES):
        op.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
