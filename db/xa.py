"""An XA participant's branch as a real PostgreSQL prepared transaction.

prepare: BEGIN, the business change, a row in `<schema>.xa_branches` (the
table the participant is handed, made by db.kit_tables.xa_branches) saying
COMMITTED, then PREPARE TRANSACTION. The change and the row survive a crash
of this process, hold their locks, and become visible together on COMMIT
PREPARED, or vanish on ROLLBACK PREPARED.

PostgreSQL lets only the role that prepared a transaction (or a superuser)
finish it, and recovery finishes branches from the coordinator's login, not
the participant's. So a branch is prepared as its schema's branch role
(`saga_xa_<schema>`, migration 0015), which holds no privilege of its own,
and finished as whichever role owns it: the participant's login and the
coordinator's are members of it, and neither gains a table by that.

Every call is idempotent and tolerates order: the branch's state is read from
`pg_prepared_xacts` (prepared) and `xa_branches` (committed, or an ABORTED
tombstone written by abort), so a repeated prepare votes as before, a repeated
commit or abort does nothing, and a prepare arriving after its abort votes no.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum

from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from db.kit_tables import schema_of
from db.relay_ring import ring_relay
from domain.two_phase import BranchCall, Vote, VoteReply

log = logging.getLogger(__name__)

# Business change inside the open branch: None to go on, a NO reply to refuse.
Change = Callable[[AsyncConnection], Awaitable[VoteReply | None]]

PG_LOCK_TIMEOUT = "55P03"

# The catalog view of prepared transactions, in its own metadata so migrations
# never mistake it for one of ours.
PG_PREPARED_XACTS = Table(
    "pg_prepared_xacts",
    MetaData(),
    Column("gid", String),
    Column("database", String),
    Column("prepared", DateTime(timezone=True)),
    Column("owner", String),
    schema="pg_catalog",
)


def branch_owner(schema: str) -> str:
    """The role that owns `schema`'s prepared branches (see the module's docstring)."""
    return f"saga_xa_{schema}"


class BranchState(StrEnum):
    PREPARED = "PREPARED"
    COMMITTED = "COMMITTED"
    ABORTED = "ABORTED"


class ProtocolViolation(RuntimeError):
    """Asked to commit an aborted branch, or to abort a committed one.

    Left retryable on purpose: it means the decision log and a participant
    disagree, which an operator must see (a stuck activity) and resolve.
    """


def _quoted(gid: str) -> str:
    # PREPARE TRANSACTION and friends take a literal, never a bind parameter.
    return "'" + gid.replace("'", "''") + "'"


class XaBranches:
    def __init__(self, engine: AsyncEngine, branches: Table, lock_timeout_ms: int = 5000) -> None:
        self._engine = engine
        self._table = branches
        self._schema = schema_of(branches)
        self._lock_timeout_ms = lock_timeout_ms

    async def state(self, gid: str) -> BranchState | None:
        xacts = PG_PREPARED_XACTS.c
        prepared = select(literal("PREPARED").label("state")).where(
            xacts.gid == gid, xacts.database == func.current_database()
        )
        recorded = select(self._table.c.outcome.label("state")).where(self._table.c.gid == gid)
        async with self._engine.connect() as conn:
            found = await conn.scalar(union_all(prepared, recorded))
        return BranchState(found) if found is not None else None

    async def prepare(self, call: BranchCall, change: Change) -> VoteReply:
        known = await self.state(call.gid)
        if known is not None:
            return _vote_for(known)
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("BEGIN")
            try:
                await conn.exec_driver_sql(f"SET LOCAL lock_timeout = {self._lock_timeout_ms}")
                refused = await change(conn)
                if refused is not None:
                    await conn.exec_driver_sql("ROLLBACK")
                    return refused
                await conn.execute(
                    self._table.insert().values(gid=call.gid, tx_id=call.tx_id, outcome="COMMITTED")
                )
                await conn.exec_driver_sql(f"SET LOCAL ROLE {branch_owner(self._schema)}")
                await conn.exec_driver_sql(f"PREPARE TRANSACTION {_quoted(call.gid)}")
            except IntegrityError:
                # Another prepare of this gid, or its abort's tombstone, got there first.
                await conn.exec_driver_sql("ROLLBACK")
                settled = await self.state(call.gid)
                if settled is None:
                    raise
                return _vote_for(settled)
            except DBAPIError as err:
                await conn.exec_driver_sql("ROLLBACK")
                if _sqlstate(err) == PG_LOCK_TIMEOUT:
                    # Someone holds the rows (another order's prepared branch): no
                    # rather than wait past the coordinator's deadline.
                    return VoteReply(vote=Vote.NO, reason="rows locked by another transaction")
                raise
            except BaseException:
                await conn.exec_driver_sql("ROLLBACK")
                raise
        log.info("prepared branch %s", call.gid)
        return VoteReply(vote=Vote.YES)

    async def commit(self, call: BranchCall) -> BranchState:
        state = await self.state(call.gid)
        if state is BranchState.PREPARED:
            await self._finish(call.gid, "COMMIT PREPARED")
            state = await self.state(call.gid)
        if state is not BranchState.COMMITTED:
            raise ProtocolViolation(f"branch {call.gid} cannot commit: it is {state or 'unknown'}")
        return state

    async def abort(self, call: BranchCall) -> BranchState:
        state = await self.state(call.gid)
        if state is BranchState.PREPARED:
            await self._finish(call.gid, "ROLLBACK PREPARED")
            state = await self.state(call.gid)
            if state is BranchState.PREPARED:
                # The rollback did not happen (a reset connection, a busy gid):
                # acknowledging now would leave the branch holding its rows.
                raise RuntimeError(f"branch {call.gid} is still prepared; retrying the abort")
        if state is BranchState.COMMITTED:
            raise ProtocolViolation(f"branch {call.gid} cannot abort: it is committed")
        if state is None:
            await self._tombstone(call)
        return BranchState.ABORTED

    async def _finish(self, gid: str, verb: str) -> None:
        statement = f"{verb} {_quoted(gid)}"
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            xacts = PG_PREPARED_XACTS.c
            owner = await conn.scalar(
                select(xacts.owner).where(
                    xacts.gid == gid, xacts.database == func.current_database()
                )
            )
            try:
                if owner is not None:
                    # Only the owner may finish it; a member becomes it for this.
                    quote = conn.dialect.identifier_preparer.quote
                    await conn.exec_driver_sql(f"SET ROLE {quote(owner)}")
                await conn.exec_driver_sql(statement)
                # The branch's outbox rows are visible now: wake the relay.
                ring_relay(self._engine, self._schema)
            except DBAPIError as err:
                # A concurrent duplicate finished it first, or this login may
                # not become its owner; the caller re-reads the state.
                log.info("%s: %s %s", statement, _sqlstate(err), err.orig)
            finally:
                await conn.exec_driver_sql("RESET ROLE")

    async def _tombstone(self, call: BranchCall) -> None:
        async with self._engine.begin() as conn:
            await conn.exec_driver_sql(f"SET LOCAL lock_timeout = {self._lock_timeout_ms}")
            await conn.execute(
                insert(self._table)
                .values(gid=call.gid, tx_id=call.tx_id, outcome="ABORTED")
                .on_conflict_do_nothing(index_elements=[self._table.c.gid])
            )
        if await self.state(call.gid) is not BranchState.ABORTED:
            raise ProtocolViolation(f"branch {call.gid} was prepared while being aborted; retry")


def _vote_for(state: BranchState) -> VoteReply:
    if state is BranchState.ABORTED:
        return VoteReply(vote=Vote.NO, reason="branch already aborted")
    return VoteReply(vote=Vote.YES)


def _sqlstate(err: DBAPIError) -> str | None:
    return getattr(err.orig, "sqlstate", None) or getattr(
        getattr(err.orig, "__cause__", None), "sqlstate", None
    )
