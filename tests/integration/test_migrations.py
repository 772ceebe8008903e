"""The migrations and the table definitions the code queries describe the same schema."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from db.tables import SERVICES, metadata

pytestmark = pytest.mark.asyncio


async def test_migrated_schema_matches_the_table_definitions(engine):
    def diff(sync_conn):
        context = MigrationContext.configure(
            sync_conn, opts={"include_schemas": True, "compare_type": True}
        )
        return [
            d
            for d in compare_metadata(context, metadata)
            if not (d[0] == "remove_table" and d[1].name == "alembic_version")
        ]

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)

    assert differences == []


async def test_every_service_has_its_schema_outbox_and_idempotency_table(engine):
    async with engine.connect() as conn:
        tables = {
            (r.table_schema, r.table_name)
            for r in await conn.execute(
                text("SELECT table_schema, table_name FROM information_schema.tables")
            )
        }
    for service in SERVICES:
        assert {(service, "outbox"), (service, "idempotency_keys")} <= tables


async def test_stock_cannot_go_negative_even_by_direct_update(engine, product):
    sku = await product(stock=1)

    with pytest.raises(Exception, match="stock_non_negative"):
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE inventory.products SET stock = stock - 2 WHERE sku = :s"), {"s": sku}
            )
