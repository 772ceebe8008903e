"""The whole database as SQLAlchemy Core tables: one PostgreSQL schema per service.

Each service owns its business tables (by owner: db.order_tables,
db.wallet_tables, db.return_tables) and the saga kit's tables made for it
(db.kit_tables): an outbox (the events the relay publishes) and an
idempotency table (the keys of the steps it has applied); XA participants an
`xa_branches` table; and the kit's shared tables (the coordinator's log, the
relay's leases, the consumers' inbox) stand in schemas of their own. The
wiring names the schemas; importing this module puts every table on
`metadata`, which Alembic compares with the migrations. Migrations create
these; this module only describes them for queries.

The application's code imports its tables from here; the kit's never does: it
is handed what it serves (wiring.served).
"""

from __future__ import annotations

from db import kit_tables
from db.kit_tables import ServiceTables
from db.metadata import metadata, views
from db.order_tables import (
    card_holds,
    order_history,
    order_lines,
    order_requests,
    orders,
    payments,
    products,
    reservations,
    shipments,
)
from db.return_tables import restocks, return_lines, return_receipts, return_refunds, returns
from db.wallet_tables import wallet_entries, wallet_events, wallet_snapshots, wallets
from wiring.services import (
    COORDINATOR_SCHEMA,
    READ_MODELS_SCHEMA,
    RELAY_PARTITIONS,
    RELAY_SCHEMA,
    SERVICES,
    XA_SCHEMAS,
)

service_tables: dict[str, ServiceTables] = {
    s: kit_tables.service_tables(metadata, s, RELAY_PARTITIONS) for s in SERVICES
}
xa_branches = {
    schema: kit_tables.xa_branches(metadata, schema) for schema in sorted(set(XA_SCHEMAS.values()))
}
decisions = kit_tables.decisions(metadata, COORDINATOR_SCHEMA)
relay_leases = kit_tables.relay_leases(metadata, RELAY_SCHEMA)
relay_members = kit_tables.relay_members(metadata, RELAY_SCHEMA)
inbox = kit_tables.inbox(metadata, READ_MODELS_SCHEMA)

__all__ = [
    "ServiceTables",
    "card_holds",
    "decisions",
    "inbox",
    "metadata",
    "order_history",
    "order_lines",
    "order_requests",
    "orders",
    "payments",
    "products",
    "relay_leases",
    "relay_members",
    "reservations",
    "restocks",
    "return_lines",
    "return_receipts",
    "return_refunds",
    "returns",
    "service_tables",
    "shipments",
    "views",
    "wallet_entries",
    "wallet_events",
    "wallet_snapshots",
    "wallets",
    "xa_branches",
]
