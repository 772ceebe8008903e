"""The API reads every service's step keys: a running saga's progress without a workflow query.

GET /orders/{id} of a running saga asked its workflow (a Temporal query, a
worker's workflow task) on every poll. Each step commits its idempotency key
in its service's schema with its effect, so the keys are the saga's progress
as committed (api.progress). saga_api already reads orders' and payments'
keys; this grants it inventory's and shipping's, read only.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("inventory.idempotency_keys", "shipping.idempotency_keys")
# 0015 let saga_api into inventory (for its products), not into shipping.
SCHEMAS = ("shipping",)


def upgrade() -> None:
    for schema in SCHEMAS:
        op.execute(f"GRANT USAGE ON SCHEMA {schema} TO saga_api")
    for table in TABLES:
        op.execute(f"GRANT SELECT ON {table} TO saga_api")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"REVOKE SELECT ON {table} FROM saga_api")
    for schema in SCHEMAS:
        op.execute(f"REVOKE USAGE ON SCHEMA {schema} FROM saga_api")
