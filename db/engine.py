"""Engine and session factory; built by entrypoints, never at import time."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SessionFactory = async_sessionmaker[AsyncSession]

# An activity attempt must end well inside its 30 s start-to-close timeout:
# an attempt still running after Temporal gave up on it is one that could
# commit behind the saga's back. So a query waits at most this long for a lock
# or to finish, and a checkout at most this long for a pooled connection.
LOCK_TIMEOUT_MS = 10_000
STATEMENT_TIMEOUT_MS = 20_000
POOL_TIMEOUT_S = 5.0
# A pooled connection idle longer than this is pinged at checkout. SQLAlchemy's
# pool_pre_ping pings at every checkout: three round trips (BEGIN, SELECT, ROLLBACK
# with asyncpg) before each step's own transaction, about a third of the
# transactions PostgreSQL saw under load. A connection in steady use needs none:
# if the server restarted meanwhile, its first error is a disconnect, which makes
# SQLAlchemy recycle the whole pool, and that one attempt fails (an activity or a
# relay round retries it; an API request that meets it fails, once).
IDLE_PING_AFTER_S = 5.0


def create_engine(
    url: str, pool_size: int = 10, idle_in_transaction_timeout_ms: int | None = None
) -> AsyncEngine:
    server_settings = {
        "lock_timeout": str(LOCK_TIMEOUT_MS),
        "statement_timeout": str(STATEMENT_TIMEOUT_MS),
    }
    if idle_in_transaction_timeout_ms is not None:
        # A process paused inside a transaction must not keep its locks for ever.
        server_settings["idle_in_transaction_session_timeout"] = str(idle_in_transaction_timeout_ms)
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=POOL_TIMEOUT_S,
        connect_args={"server_settings": server_settings},
    )
    ping_when_idle(engine, IDLE_PING_AFTER_S)
    return engine


def ping_when_idle(engine: AsyncEngine, after_s: float) -> None:
    """A process outlives PostgreSQL restarts: a connection that sat idle in the pool
    (through a quiet night, say) is pinged before use, and replaced if dead."""
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    @event.listens_for(pool, "checkin")
    def _idle_from(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < after_s:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as err:  # whatever it is, this connection is not to be used
            # The pool checks out a fresh one, and drops every connection as old as
            # this one: a server that killed one idle connection restarted, most likely.
            raise exc.InvalidatePoolError("idle connection did not answer a ping") from err


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)


def sessions_on(conn: AsyncConnection) -> SessionFactory:
    """Sessions inside `conn`'s open transaction, each as a savepoint.

    A consumer claims an event in its inbox and runs a step on one connection:
    both commit together, and a refused step rolls back to its savepoint only,
    leaving the transaction free to record the refusal.
    """
    return async_sessionmaker(
        bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )


def asyncpg_dsn(database_url: str) -> str:
    """The SQLAlchemy URL in settings as a plain libpq DSN, for asyncpg's own connections."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
