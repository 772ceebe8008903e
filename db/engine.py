"""Engine and session factory; built by entrypoints, never at import time."""

from __future__ import annotations

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
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=POOL_TIMEOUT_S,
        # A worker outlives PostgreSQL restarts; a dead pooled connection
        # should cost a reconnect, not a failed activity attempt.
        pool_pre_ping=True,
        connect_args={"server_settings": server_settings},
    )


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
