"""The wallet's tables (payments): store credit as an event stream, its projection and snapshots.

Migrations create these; this module only describes them for queries.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    String,
    Table,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import UUID

from db.metadata import metadata, views

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

# The ledger as it read before the stream: a view over wallet_events, signed
# (debits negative), without the AccountOpened events. A view: on `views`, so
# never migrated from here.
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
