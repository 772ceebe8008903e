"""The schema as SQLAlchemy Core tables: one PostgreSQL schema per service.

Each service owns its business tables, an outbox (the events the relay
publishes) and an idempotency table (the keys of the steps it has applied).
Migrations create these; this module only describes them for queries.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

SERVICES = ("orders", "inventory", "payments", "shipping")
# Fixed for the life of the data: it is baked into each outbox row's partition.
RELAY_PARTITIONS = 64

metadata = MetaData()


def _now() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


@dataclass(frozen=True)
class ServiceTables:
    outbox: Table
    idempotency: Table


def _service_tables(schema: str) -> ServiceTables:
    outbox = Table(
        "outbox",
        metadata,
        Column("event_id", UUID(as_uuid=False), primary_key=True),
        # Insert order, not commit order: a later-numbered row can commit
        # first, so a relay must not treat the highest seq seen as a watermark.
        Column("seq", BigInteger, Identity(always=True), nullable=False, unique=True),
        Column("aggregate_type", String(100), nullable=False),
        Column("aggregate_id", String(255), nullable=False),
        Column("event_type", String(100), nullable=False),
        Column("payload", JSONB, nullable=False),
        Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("status", String(20), nullable=False, server_default="PENDING"),
        Column("attempts", Integer, nullable=False, server_default="0"),
        _now(),
        Column("published_at", DateTime(timezone=True)),
        # The relay partition (masked, not abs(): abs(-2^31) overflows): every
        # event of one aggregate lands in one, so
        # one relay instance publishes them, in order.
        Column(
            "partition",
            Integer,
            Computed(
                "(hashtext(aggregate_type || ':' || aggregate_id) & 2147483647)"
                f" % {RELAY_PARTITIONS}",
                persisted=True,
            ),
            nullable=False,
        ),
        Column("last_error", Text),
        Column("next_attempt_at", DateTime(timezone=True)),
        CheckConstraint("status IN ('PENDING', 'PUBLISHED', 'FAILED')", name="outbox_status"),
        schema=schema,
    )
    Index(
        f"ix_{schema}_outbox_pending",
        outbox.c.partition,
        outbox.c.seq,
        postgresql_where=outbox.c.status == "PENDING",
    )
    Index(
        f"ix_{schema}_outbox_published",
        outbox.c.published_at,
        postgresql_where=outbox.c.status == "PUBLISHED",
    )
    Index(f"ix_{schema}_outbox_aggregate", outbox.c.aggregate_id, outbox.c.seq)
    # Each aggregate's pending rows: what the claim counts before each row it takes (0017).
    Index(
        f"ix_{schema}_outbox_pending_aggregate",
        outbox.c.aggregate_id,
        outbox.c.aggregate_type,
        outbox.c.seq,
        postgresql_where=outbox.c.status == "PENDING",
    )
    # The few rows waiting to retry: what the claim probes for each candidate (0009).
    Index(
        f"ix_{schema}_outbox_retrying",
        outbox.c.aggregate_id,
        outbox.c.aggregate_type,
        outbox.c.seq,
        postgresql_where=(outbox.c.status == "PENDING") & outbox.c.next_attempt_at.is_not(None),
    )
    idempotency = Table(
        "idempotency_keys",
        metadata,
        Column("key", String(255), primary_key=True),
        Column("result", JSONB),
        _now(),
        schema=schema,
    )
    return ServiceTables(outbox=outbox, idempotency=idempotency)


service_tables: dict[str, ServiceTables] = {s: _service_tables(s) for s in SERVICES}

orders = Table(
    "orders",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("customer_id", String(128), nullable=False),
    Column("status", String(20), nullable=False),
    Column("total", BigInteger, nullable=False),
    # None for an order cancelled before it was priced (its record all the same).
    Column("currency", String(3)),
    Column("workflow_id", String(255), nullable=False, unique=True),
    Column("request_hash", String(64), nullable=False, server_default=""),
    # The saga's own record, written when it closes, so reads survive the workflow.
    Column("steps", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("compensations", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("failure_reason", Text),
    _now(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # orchestration: an OrderSaga workflow runs it (workflow_id); choreography:
    # the services' event handlers do, and the orders service cancels it once
    # deadline_at passes (workflow_id then holds its correlation id).
    Column("saga_mode", String(16), nullable=False, server_default="orchestration"),
    Column("deadline_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('PENDING', 'CONFIRMED', 'CANCELLED')", name="order_status"),
    CheckConstraint("saga_mode IN ('orchestration', 'choreography')", name="order_saga_mode"),
    CheckConstraint(
        "saga_mode <> 'choreography' OR deadline_at IS NOT NULL",
        name="order_choreography_deadline",
    ),
    CheckConstraint("total >= 0", name="order_total_non_negative"),
    schema="orders",
)
Index("ix_orders_created", orders.c.created_at.desc())
Index("ix_orders_customer_created", orders.c.customer_id, orders.c.created_at.desc())
# GET /orders?status=, newest first, and its next pages (migration 0014).
Index("ix_orders_status_created", orders.c.status, orders.c.created_at.desc(), orders.c.order_id)
# The orders service's timeout sweep: choreographed orders still open, by deadline.
Index(
    "ix_orders_choreography_open",
    orders.c.deadline_at,
    postgresql_where=text("status = 'PENDING' AND saga_mode = 'choreography'"),
)

# The API's claim on an order id, taken before either mode starts the order:
# two requests racing with one Idempotency-Key (in one mode or in both) find
# one claim, so only one of them is accepted. The orders row comes later (an
# orchestrated order's, from its saga's first step).
order_requests = Table(
    "order_requests",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("saga_mode", String(16), nullable=False),
    _now(),
    schema="orders",
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", String(64), ForeignKey("orders.orders.order_id"), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("sku", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    CheckConstraint("quantity > 0", name="line_quantity_positive"),
    schema="orders",
)

products = Table(
    "products",
    metadata,
    Column("sku", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    # Units free to sell: a reservation takes them out, a release puts them back.
    Column("stock", Integer, nullable=False),
    # Every unit ever received (opening stock, set by a trigger when omitted, plus
    # restocks): received - units RESERVED = stock, which the audit checks.
    Column("stock_received", Integer, nullable=False),
    CheckConstraint("stock >= 0", name="stock_non_negative"),
    CheckConstraint("price >= 0", name="price_non_negative"),
    schema="inventory",
)

reservations = Table(
    "reservations",
    metadata,
    Column("reservation_id", UUID(as_uuid=False), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("sku", String(64), ForeignKey("inventory.products.sku"), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    _now(),
    Column("released_at", DateTime(timezone=True)),
    UniqueConstraint("order_id", "sku", name="reservation_order_sku"),
    CheckConstraint("quantity > 0", name="reservation_quantity_positive"),
    CheckConstraint("status IN ('RESERVED', 'RELEASED')", name="reservation_status"),
    schema="inventory",
)

payments = Table(
    "payments",
    metadata,
    Column("payment_id", UUID(as_uuid=False), primary_key=True),
    Column("order_id", String(64), nullable=False, unique=True),
    Column("customer_id", String(128), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(20), nullable=False),
    Column("refunded_amount", BigInteger, nullable=False, server_default="0"),
    _now(),
    Column("refunded_at", DateTime(timezone=True)),
    Column("provider_authorization_id", String(64)),
    CheckConstraint("amount >= 0", name="payment_amount_non_negative"),
    CheckConstraint("refunded_amount BETWEEN 0 AND amount", name="payment_refund_bounded"),
    CheckConstraint("status IN ('CAPTURED', 'REFUNDED')", name="payment_status"),
    schema="payments",
)

shipments = Table(
    "shipments",
    metadata,
    Column("shipment_id", UUID(as_uuid=False), primary_key=True),
    Column("order_id", String(64), nullable=False, unique=True),
    Column("customer_id", String(128), nullable=False),
    Column("tracking_number", String(64), nullable=False, unique=True),
    Column("status", String(20), nullable=False),
    _now(),
    Column("cancelled_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('CREATED', 'CANCELLED')", name="shipment_status"),
    schema="shipping",
)

# --- store credit and card holds (payments) -----------------------------------

wallets = Table(
    "wallets",
    metadata,
    Column("customer_id", String(128), primary_key=True),
    Column("balance", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The balance projection of the wallet's event stream, as of this version.
    Column("version", BigInteger, nullable=False, server_default="0"),
    CheckConstraint("balance >= 0", name="wallet_balance_non_negative"),
    schema="payments",
)

# The wallet's event stream, its source of truth (migration 0007): numbered per
# wallet, and (customer_id, version) unique, so two writers of one version
# cannot both commit (optimistic concurrency).
wallet_events = Table(
    "wallet_events",
    metadata,
    Column("customer_id", String(128), primary_key=True),
    Column("version", BigInteger, primary_key=True, autoincrement=False),
    Column("event_type", String(30), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("order_id", String(64)),
    Column("entry_id", UUID(as_uuid=False), nullable=False),
    Column(
        "occurred_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.clock_timestamp(),
    ),
    UniqueConstraint("entry_id", name="wallet_event_entry"),
    CheckConstraint("version > 0", name="wallet_event_version_positive"),
    CheckConstraint("amount >= 0", name="wallet_event_amount_non_negative"),
    CheckConstraint(
        "event_type IN ('AccountOpened', 'Credited', 'Debited', 'DebitReversed')",
        name="wallet_event_type",
    ),
    schema="payments",
)
Index("ix_wallet_events_order", wallet_events.c.order_id)
Index("ix_wallet_events_time", wallet_events.c.customer_id, wallet_events.c.occurred_at)

wallet_snapshots = Table(
    "wallet_snapshots",
    metadata,
    Column("customer_id", String(128), primary_key=True),
    Column("version", BigInteger, primary_key=True, autoincrement=False),
    Column("balance", BigInteger, nullable=False),
    Column(
        "taken_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()
    ),
    schema="payments",
)

# Views are read, never migrated from here: kept out of `metadata`.
views = MetaData()

# The ledger as it read before the stream: a view over wallet_events, signed
# (debits negative), without the AccountOpened events.
wallet_entries = Table(
    "wallet_entries",
    views,
    Column("entry_id", UUID(as_uuid=False)),
    Column("customer_id", String(128)),
    Column("amount", BigInteger),
    Column("kind", String(20)),
    Column("order_id", String(64)),
    Column("created_at", DateTime(timezone=True)),
    schema="payments",
)

card_holds = Table(
    "card_holds",
    metadata,
    Column("tx_id", String(255), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    # TRYING from the start of a try until the provider answered (committed
    # before it asks, so a try cut short leaves a row to recover); HELD after
    # try; CAPTURED after confirm; VOIDED after cancel (or as a tombstone when
    # cancel came first); REFUSED when try was declined.
    Column("status", String(20), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    _now(),
    Column("resolved_at", DateTime(timezone=True)),
    Column("provider_authorization_id", String(64)),
    CheckConstraint("amount >= 0", name="card_hold_amount_non_negative"),
    CheckConstraint(
        "status IN ('TRYING', 'HELD', 'CAPTURED', 'VOIDED', 'REFUSED')", name="card_hold_status"
    ),
    schema="payments",
)
Index(
    "ix_card_holds_open",
    card_holds.c.created_at,
    postgresql_where=card_holds.c.status.in_(("TRYING", "HELD")),
)


def _xa_branches(schema: str) -> Table:
    """Outcome of each XA branch this schema took part in.

    A branch's row is written inside its prepared transaction, so it exists once
    COMMIT PREPARED has run; an abort writes an ABORTED tombstone, so a prepare
    that arrives late finds it and votes no.
    """
    return Table(
        "xa_branches",
        metadata,
        Column("gid", String(200), primary_key=True),
        Column("tx_id", String(255), nullable=False),
        Column("outcome", String(20), nullable=False),
        _now(),
        CheckConstraint("outcome IN ('COMMITTED', 'ABORTED')", name="xa_branch_outcome"),
        schema=schema,
    )


xa_branches = {schema: _xa_branches(schema) for schema in ("inventory", "payments")}

# --- the 2PC coordinator's log --------------------------------------------------

decisions = Table(
    "decisions",
    metadata,
    Column("tx_id", String(255), primary_key=True),
    Column("decision", String(10), nullable=False),
    Column("participants", JSONB, nullable=False),
    Column("votes", JSONB, nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("completed_at", DateTime(timezone=True)),
    CheckConstraint("decision IN ('COMMIT', 'ABORT')", name="decision_value"),
    schema="coordinator",
)

# --- the outbox relay and its consumers ------------------------------------------

relay_leases = Table(
    "leases",
    metadata,
    Column("partition", Integer, primary_key=True, autoincrement=False),
    Column("owner", String(100)),
    # The fencing token: grows with every grant, so a former holder's writes
    # (which carry the epoch it was granted) can be refused.
    Column("epoch", BigInteger, nullable=False, server_default="0"),
    Column("expires_at", DateTime(timezone=True), nullable=False, server_default="epoch"),
    schema="relay",
)

inbox = Table(
    "inbox",
    metadata,
    Column("consumer", String(100), primary_key=True),
    Column("event_id", UUID(as_uuid=False), primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    schema="readmodels",
)

order_history = Table(
    "order_history",
    metadata,
    Column("event_id", UUID(as_uuid=False), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("source", String(50), nullable=False),
    Column("aggregate_type", String(100), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    schema="readmodels",
)
Index("ix_order_history_order", order_history.c.order_id, order_history.c.occurred_at)

relay_members = Table(
    "members",
    metadata,
    Column("instance_id", String(100), primary_key=True),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    schema="relay",
)

# --- order returns (migration 0018): each service's part of a ReturnSaga --------

returns = Table(
    "returns",
    metadata,
    Column("return_id", String(64), primary_key=True),
    Column("order_id", String(64), ForeignKey("orders.orders.order_id"), nullable=False),
    Column("workflow_id", String(255), nullable=False, unique=True),
    Column("status", String(20), nullable=False),
    Column("request_hash", String(64), nullable=False, server_default=""),
    # What the returned lines cost at the order's prices; refunded as card + store credit.
    Column("value", BigInteger, nullable=False),
    Column("card_refunded", BigInteger, nullable=False, server_default="0"),
    Column("store_credit_refunded", BigInteger, nullable=False, server_default="0"),
    Column("steps", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("compensations", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("failure_reason", Text),
    _now(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("status IN ('OPEN', 'CLOSED', 'CANCELLED')", name="return_status"),
    CheckConstraint("value >= 0", name="return_value_non_negative"),
    schema="orders",
)
Index("ix_returns_order", returns.c.order_id, returns.c.created_at)

return_lines = Table(
    "return_lines",
    metadata,
    Column("return_id", String(64), ForeignKey("orders.returns.return_id"), primary_key=True),
    Column("sku", String(64), primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", BigInteger, nullable=False),
    CheckConstraint("quantity > 0", name="return_line_quantity_positive"),
    schema="orders",
)

return_receipts = Table(
    "return_receipts",
    metadata,
    Column("return_id", String(64), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("units", Integer, nullable=False),
    # RECEIVED: the goods are at the warehouse; REJECTED: the return was undone.
    Column("status", String(20), nullable=False),
    _now(),
    Column("rejected_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('RECEIVED', 'REJECTED')", name="return_receipt_status"),
    schema="shipping",
)

restocks = Table(
    "restocks",
    metadata,
    Column("return_id", String(64), primary_key=True),
    Column("sku", String(64), ForeignKey("inventory.products.sku"), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    # RESTOCKED: the units are back on the shelf; REVERSED: taken out again (undone).
    Column("status", String(20), nullable=False),
    _now(),
    Column("reversed_at", DateTime(timezone=True)),
    CheckConstraint("quantity > 0", name="restock_quantity_positive"),
    CheckConstraint("status IN ('RESTOCKED', 'REVERSED')", name="restock_status"),
    schema="inventory",
)

return_refunds = Table(
    "return_refunds",
    metadata,
    Column("return_id", String(64), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("customer_id", String(128), nullable=False),
    Column("value", BigInteger, nullable=False),
    Column("card_amount", BigInteger, nullable=False),
    Column("store_credit_amount", BigInteger, nullable=False),
    Column("provider_refund_id", String(64)),
    # The wallet event that credited store_credit_amount, once it has.
    Column("wallet_entry_id", UUID(as_uuid=False)),
    _now(),
    CheckConstraint("card_amount >= 0 AND store_credit_amount >= 0", name="return_refund_parts"),
    CheckConstraint("card_amount + store_credit_amount = value", name="return_refund_whole"),
    schema="payments",
)
Index("ix_return_refunds_order", return_refunds.c.order_id)
