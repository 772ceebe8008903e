"""The demo catalog that `make run` loads; rerunning it leaves existing stock alone."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert

from db.engine import create_engine
from db.tables import products

DEMO_CATALOG: tuple[dict[str, object], ...] = (
    {"sku": "KB-001", "name": "Mechanical keyboard", "price": 8900, "stock": 120},
    {"sku": "MS-002", "name": "Wireless mouse", "price": 2900, "stock": 500},
    {"sku": "MN-003", "name": "27-inch monitor", "price": 27900, "stock": 40},
    {"sku": "HD-004", "name": "Noise-cancelling headphones", "price": 19900, "stock": 75},
    {"sku": "CB-005", "name": "USB-C cable", "price": 990, "stock": 1000},
    {"sku": "DK-006", "name": "Docking station", "price": 14900, "stock": 10},
)
DEMO_CURRENCY = "EUR"


async def seed_demo_catalog(database_url: str) -> int:
    """Insert the products that are missing; returns how many were added."""
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(
                insert(products)
                .values([{**row, "currency": DEMO_CURRENCY} for row in DEMO_CATALOG])
                .on_conflict_do_nothing(index_elements=[products.c.sku])
                .returning(products.c.sku)
            )
            return len(result.all())
    finally:
        await engine.dispose()
