"""The kit's tables are made for whatever schema the application names (db.kit_tables)."""

from __future__ import annotations

import pytest
from sqlalchemy import MetaData, Table
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.schema import CreateIndex, CreateTable

from db import kit_tables
from db.tables import decisions, inbox, relay_leases, relay_members, service_tables, xa_branches


def ddl(table: Table) -> list[str]:
    """The table's CREATE TABLE and CREATE INDEX statements, its schema's name neutral."""
    dialect = PGDialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves it unannotated
    statements = [str(CreateTable(table).compile(dialect=dialect))]
    statements += sorted(str(CreateIndex(i).compile(dialect=dialect)) for i in table.indexes)
    return [s.replace(f"{table.schema}", "<schema>") for s in statements]


def test_a_service_of_any_schema_gets_the_same_outbox_and_keys_as_the_applications():
    made = kit_tables.service_tables(MetaData(), "acme", 64)

    assert (made.outbox.fullname, made.idempotency.fullname) == (
        "acme.outbox",
        "acme.idempotency_keys",
    )
    assert made.service == "acme"
    assert ddl(made.outbox) == ddl(service_tables["orders"].outbox)
    assert ddl(made.idempotency) == ddl(service_tables["orders"].idempotency)


def test_an_outboxs_indexes_are_named_for_its_schema_and_its_partitions_counted_as_given():
    outbox = kit_tables.outbox(MetaData(), "acme", 8)

    assert {i.name for i in outbox.indexes} == {
        "ix_acme_outbox_pending",
        "ix_acme_outbox_published",
        "ix_acme_outbox_aggregate",
        "ix_acme_outbox_pending_aggregate",
        "ix_acme_outbox_retrying",
    }
    computed = outbox.c.partition.computed
    assert computed is not None and str(computed.sqltext).endswith(" % 8")


def test_two_schemas_kit_tables_stand_side_by_side_on_one_metadata():
    metadata = MetaData()
    for schema in ("acme", "globex"):
        kit_tables.service_tables(metadata, schema, 4)
        kit_tables.xa_branches(metadata, schema)

    assert sorted(metadata.tables) == [
        "acme.idempotency_keys",
        "acme.outbox",
        "acme.xa_branches",
        "globex.idempotency_keys",
        "globex.outbox",
        "globex.xa_branches",
    ]


@pytest.mark.parametrize(
    ("make", "applications"),
    [
        (kit_tables.xa_branches, xa_branches["inventory"]),
        (kit_tables.decisions, decisions),
        (kit_tables.relay_leases, relay_leases),
        (kit_tables.relay_members, relay_members),
        (kit_tables.inbox, inbox),
    ],
)
def test_each_shared_kit_table_is_made_in_the_schema_given(make, applications):
    made = make(MetaData(), "acme")

    assert made.fullname == f"acme.{applications.name}"
    assert ddl(made) == ddl(applications)


def test_the_relay_tables_find_an_outbox_by_its_service():
    metadata = MetaData()
    outboxes = tuple(kit_tables.outbox(metadata, s, 4) for s in ("acme", "globex"))
    relayed = kit_tables.RelayTables(
        outboxes=outboxes,
        leases=kit_tables.relay_leases(metadata, "relay"),
        members=kit_tables.relay_members(metadata, "relay"),
        partitions=4,
    )

    assert relayed.services == ("acme", "globex")
    assert relayed.outbox("globex") is outboxes[1]
    with pytest.raises(KeyError):
        relayed.outbox("orders")
