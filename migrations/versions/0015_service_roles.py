"""One PostgreSQL role per service, with rights on its own schema and on what it reads.

Group roles (NOLOGIN) carry the privileges; a deployment creates LOGIN roles,
with passwords, as members of them (docker-compose: deploy/postgres/init.sh).
No password lives here. The role that runs migrations owns every schema and
table; the services only read and write rows.

- saga_orders, saga_inventory, saga_payments, saga_shipping: their schema's
  rows, the choreography inbox (readmodels.inbox). Orders also reads the
  catalog's prices (create_order prices an order) and the order history (the
  choreography timeout names the step an order stalled before).
- saga_coordinator: the 2PC decision log, and what recovery does for the
  participants of a transaction whose coordinator is gone: tombstones in
  their xa_branches, the card hold's state and its capture (payments.payments
  and the payments outbox). The orders worker runs both.
- saga_xa_inventory, saga_xa_payments: no privileges at all. A participant's
  prepared transaction is owned by its branch role (db.xa sets it before
  PREPARE), and only a member of that role may COMMIT or ROLLBACK PREPARED it:
  the participant's login and the coordinator's are its members, and being
  one grants no table.
- saga_relay: read, mark and prune the four outboxes; its leases and members.
  The CDC mode (SAGA_RELAY_MODE=cdc) also needs the REPLICATION attribute on
  the relay's login, which only a superuser can give.
- saga_readmodels: the consumers' inbox and order history.
- saga_api: reads for its routes; the order-id claims; the orders service's
  writes for choreographed orders it places and cancels; the wallet top-up.
- saga_audit: SELECT on every table.

A table created later in a service's schema is granted to that service and
to saga_audit by the default privileges set here, as long as the same role
runs the migrations. Any other role a later table is for, the migration that
creates it grants.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVICES = ("orders", "inventory", "payments", "shipping")
SCHEMAS = (*SERVICES, "coordinator", "relay", "readmodels")
BRANCH_OWNERS = ("saga_xa_inventory", "saga_xa_payments")
GROUP_ROLES = (
    *(f"saga_{service}" for service in SERVICES),
    "saga_coordinator",
    "saga_relay",
    "saga_readmodels",
    "saga_api",
    "saga_audit",
    *BRANCH_OWNERS,
)
ROWS = "SELECT, INSERT, UPDATE"
INBOX = ("SELECT, INSERT", "readmodels.inbox")

# (role, privileges, what): `schema.*` is every table of the schema, now and
# created later by the migrating role (default privileges).
GRANTS: tuple[tuple[str, str, str], ...] = (
    *((f"saga_{service}", ROWS, f"{service}.*") for service in SERVICES),
    *((f"saga_{service}", *INBOX) for service in SERVICES),
    ("saga_orders", "SELECT (sku, price, currency)", "inventory.products"),
    ("saga_orders", "SELECT", "readmodels.order_history"),
    ("saga_coordinator", ROWS, "coordinator.*"),
    ("saga_coordinator", "SELECT, INSERT", "inventory.xa_branches"),
    ("saga_coordinator", "SELECT, INSERT", "payments.xa_branches"),
    ("saga_coordinator", ROWS, "payments.card_holds"),
    ("saga_coordinator", "INSERT", "payments.payments"),
    ("saga_coordinator", "INSERT", "payments.outbox"),
    *(("saga_relay", "SELECT, UPDATE, DELETE", f"{service}.outbox") for service in SERVICES),
    ("saga_relay", "SELECT, INSERT, UPDATE, DELETE", "relay.*"),
    ("saga_readmodels", ROWS, "readmodels.*"),
    ("saga_api", ROWS, "orders.*"),
    ("saga_api", "DELETE", "orders.order_requests"),
    ("saga_api", "SELECT", "inventory.products"),
    *(
        ("saga_api", ROWS, f"payments.{table}")
        for table in ("wallets", "wallet_events", "wallet_snapshots", "idempotency_keys")
    ),
    ("saga_api", "INSERT", "payments.outbox"),
    ("saga_api", "SELECT", "coordinator.decisions"),
    ("saga_api", "SELECT", "readmodels.order_history"),
    *(("saga_audit", "SELECT", f"{schema}.*") for schema in SCHEMAS),
)

_CREATE_ROLE = """
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
        CREATE ROLE {role} NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object THEN
    NULL;  -- another database's migration created it meanwhile (roles are cluster-wide)
END $$
"""

# Roles are shared by every database of the cluster, and deployments make
# their logins members: drop one only when nothing refers to it any more.
_DROP_ROLE_IF_UNUSED = """
DO $$ BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
        WHERE r.rolname = '{role}'
    ) THEN
        DROP ROLE IF EXISTS {role};
    END IF;
EXCEPTION WHEN dependent_objects_still_exist OR insufficient_privilege THEN
    RAISE NOTICE 'role {role} kept: %', SQLERRM;
END $$
"""


def _on(what: str) -> tuple[str, str | None]:
    """The schema and the table (None: every table) a grant names."""
    schema, table = what.split(".")
    return schema, None if table == "*" else table


def upgrade() -> None:
    for role in GROUP_ROLES:
        op.execute(_CREATE_ROLE.format(role=role))
    for role, privileges, what in GRANTS:
        schema, table = _on(what)
        op.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        if table is not None:
            op.execute(f"GRANT {privileges} ON {schema}.{table} TO {role}")
            continue
        op.execute(f"GRANT {privileges} ON ALL TABLES IN SCHEMA {schema} TO {role}")
        op.execute(
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT {privileges} ON TABLES TO {role}"
        )


def downgrade() -> None:
    for role in GROUP_ROLES:
        for schema in SCHEMAS:
            op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}")
            op.execute(
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON TABLES FROM {role}"
            )
            op.execute(f"REVOKE ALL ON SCHEMA {schema} FROM {role}")
        op.execute(_DROP_ROLE_IF_UNUSED.format(role=role))
