"""The migrations and the table definitions the code queries describe the same schema."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from db.engine import create_engine
from db.migrate import alembic_config, upgrade
from db.tables import metadata
from wiring.services import SERVICES

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


GROUP_ROLES_GRANTED = """
    SELECT grantee, table_schema || '.' || table_name, privilege_type
    FROM information_schema.role_table_grants WHERE grantee LIKE 'saga\\_%'
    UNION ALL
    SELECT grantee, table_schema || '.' || table_name || '.' || column_name, privilege_type
    FROM information_schema.role_column_grants WHERE grantee LIKE 'saga\\_%'
    UNION ALL
    SELECT 'default', n.nspname, d.defaclacl::text
    FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace
"""


async def grants_in(url: str) -> set[tuple[str, str, str]]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            return {tuple(row) for row in await conn.execute(text(GROUP_ROLES_GRANTED))}
    finally:
        await engine.dispose()


@pytest.fixture
async def fresh_database(postgres) -> AsyncIterator[str]:
    """A database of this test's own in the session's cluster (whose roles it shares)."""
    name = f"migrations_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres.dsn("postgres"))
    await admin.execute(f"CREATE DATABASE {name}")
    yield postgres.url.rsplit("/", 1)[0] + f"/{name}"
    await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    await admin.close()


async def test_service_roles_are_granted_and_revoked_by_their_migration(fresh_database):
    await asyncio.to_thread(upgrade, fresh_database)
    granted = await grants_in(fresh_database)
    assert ("saga_inventory", "inventory.products", "UPDATE") in granted
    assert ("saga_orders", "inventory.products.price", "SELECT") in granted
    assert ("saga_orders", "inventory.products.stock", "SELECT") not in granted
    assert not {g for g in granted if g[0] == "saga_inventory" and g[1].startswith("payments.")}
    assert not {g for g in granted if g[0].startswith("saga_xa_")}
    assert (
        "default",
        "orders",
        "{saga_orders=arw/postgres,saga_api=arw/postgres,saga_audit=r/postgres}",
    ) in granted

    config = alembic_config(fresh_database)
    await asyncio.to_thread(command.downgrade, config, "0013")
    assert await grants_in(fresh_database) == set()

    await asyncio.to_thread(upgrade, fresh_database)
    assert await grants_in(fresh_database) == granted


async def test_a_table_a_later_migration_creates_is_granted_to_its_service(engine):
    table = f"orders.later_{uuid.uuid4().hex[:8]}"
    async with engine.begin() as conn:  # as the role that ran the migrations
        await conn.execute(text(f"CREATE TABLE {table} (id int)"))
        rights = (
            await conn.execute(
                text(
                    "SELECT has_table_privilege('saga_orders', :t, 'INSERT'),"
                    " has_table_privilege('saga_audit', :t, 'SELECT'),"
                    " has_table_privilege('saga_inventory', :t, 'SELECT')"
                ),
                {"t": table},
            )
        ).one()
        await conn.execute(text(f"DROP TABLE {table}"))
    assert tuple(rights) == (True, True, False)
