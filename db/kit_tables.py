"""The saga kit's own tables, made for whatever schemas the application names.

The kit (unit of work, XA branches, relay, consumers) knows no service: each
factory here describes one of its tables in the schema it is given, on the
MetaData it is given, and the kit's code is handed the tables it serves. The
application builds them for its own schemas once (db.tables, from the
wiring), and its migrations create them. Names of constraints and indexes are
the migrations' own, so Alembic compares them as equal.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID


def created_at() -> Column[object]:
    """The `created_at` column most tables have: set by the database at insert."""
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def schema_of(table: Table) -> str:
    """The schema a kit table was made in (every one is made in one)."""
    assert table.schema is not None, f"{table.name} was made without a schema"
    return table.schema


@dataclass(frozen=True)
class ServiceTables:
    """What one service's steps write besides their business rows."""

    outbox: Table
    idempotency: Table

    @property
    def service(self) -> str:
        """The service's name: the schema of its tables, and its events' `source`."""
        return schema_of(self.outbox)


@dataclass(frozen=True)
class RelayTables:
    """What one relay serves: the outboxes it publishes, in the order a round visits
    them, and the lease tables its instances share `partitions` through."""

    outboxes: tuple[Table, ...]
    leases: Table
    members: Table
    # The outboxes' partition count (baked into their rows): the leases' range.
    partitions: int

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(schema_of(outbox) for outbox in self.outboxes)

    def outbox(self, service: str) -> Table:
        for table in self.outboxes:
            if table.schema == service:
                return table
        raise KeyError(f"the relay serves no outbox of {service!r}")


def outbox(metadata: MetaData, schema: str, partitions: int) -> Table:
    """`<schema>.outbox`: the events a service's steps committed, for the relay."""
    table = Table(
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
        created_at(),
        Column("published_at", DateTime(timezone=True)),
        # The relay partition (masked, not abs(): abs(-2^31) overflows): every
        # event of one aggregate lands in one, so
        # one relay instance publishes them, in order.
        Column(
            "partition",
            Integer,
            Computed(
                f"(hashtext(aggregate_type || ':' || aggregate_id) & 2147483647) % {partitions}",
                persisted=True,
            ),
            nullable=False,
        ),
        Column("last_error", Text),
        Column("next_attempt_at", DateTime(timezone=True)),
        CheckConstraint("status IN ('PENDING', 'PUBLISHED', 'FAILED')", name="outbox_status"),
        schema=schema,
    )
    _outbox_indexes(table, schema)
    return table


def _outbox_indexes(outbox: Table, schema: str) -> None:
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


def idempotency_keys(metadata: MetaData, schema: str) -> Table:
    """`<schema>.idempotency_keys`: the keys of the steps a service applied, and their results."""
    return Table(
        "idempotency_keys",
        metadata,
        Column("key", String(255), primary_key=True),
        Column("result", JSONB),
        created_at(),
        schema=schema,
    )


def service_tables(metadata: MetaData, schema: str, partitions: int) -> ServiceTables:
    return ServiceTables(
        outbox=outbox(metadata, schema, partitions),
        idempotency=idempotency_keys(metadata, schema),
    )


def xa_branches(metadata: MetaData, schema: str) -> Table:
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
        created_at(),
        CheckConstraint("outcome IN ('COMMITTED', 'ABORTED')", name="xa_branch_outcome"),
        schema=schema,
    )


def decisions(metadata: MetaData, schema: str) -> Table:
    """The 2PC coordinator's log: each transaction's decision, and when it was carried out."""
    return Table(
        "decisions",
        metadata,
        Column("tx_id", String(255), primary_key=True),
        Column("decision", String(10), nullable=False),
        Column("participants", JSONB, nullable=False),
        Column("votes", JSONB, nullable=False),
        Column("decided_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("completed_at", DateTime(timezone=True)),
        CheckConstraint("decision IN ('COMMIT', 'ABORT')", name="decision_value"),
        schema=schema,
    )


def relay_leases(metadata: MetaData, schema: str) -> Table:
    """One row per outbox partition: which relay instance publishes it, until when."""
    return Table(
        "leases",
        metadata,
        Column("partition", Integer, primary_key=True, autoincrement=False),
        Column("owner", String(100)),
        # The fencing token: grows with every grant, so a former holder's writes
        # (which carry the epoch it was granted) can be refused.
        Column("epoch", BigInteger, nullable=False, server_default="0"),
        Column("expires_at", DateTime(timezone=True), nullable=False, server_default="epoch"),
        schema=schema,
    )


def relay_members(metadata: MetaData, schema: str) -> Table:
    """The relay instances alive, by heartbeat: what the leases are shared among."""
    return Table(
        "members",
        metadata,
        Column("instance_id", String(100), primary_key=True),
        Column("heartbeat_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        schema=schema,
    )


def inbox(metadata: MetaData, schema: str) -> Table:
    """The events each consumer has applied (consumers.inbox)."""
    return Table(
        "inbox",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", UUID(as_uuid=False), primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        schema=schema,
    )
