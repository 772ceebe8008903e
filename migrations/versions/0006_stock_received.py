"""Products record every unit they ever received, so the audit can check stock is conserved.

received - units held by RESERVED reservations = stock, for every product. A
product enters with its opening stock as received; a restock must raise both.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE inventory.products ADD COLUMN stock_received integer")
    # Existing rows: what they have now plus what reservations hold of them.
    op.execute(
        """
        UPDATE inventory.products p SET stock_received = p.stock + coalesce(
            (SELECT sum(r.quantity) FROM inventory.reservations r
             WHERE r.sku = p.sku AND r.status = 'RESERVED'), 0)
        """
    )
    op.execute("ALTER TABLE inventory.products ALTER COLUMN stock_received SET NOT NULL")
    # Every insert path (seed, tests, benchmarks) names only the opening stock.
    op.execute(
        """
        CREATE FUNCTION inventory.opening_stock_received() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.stock_received IS NULL THEN
                NEW.stock_received := NEW.stock;
            END IF;
            RETURN NEW;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER products_opening_stock BEFORE INSERT ON inventory.products
        FOR EACH ROW EXECUTE FUNCTION inventory.opening_stock_received()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER products_opening_stock ON inventory.products")
    op.execute("DROP FUNCTION inventory.opening_stock_received()")
    op.execute("ALTER TABLE inventory.products DROP COLUMN stock_received")
