"""Engine and session factory; built by entrypoints, never at import time."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SessionFactory = async_sessionmaker[AsyncSession]


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    # pre_ping: a worker outlives PostgreSQL restarts; a dead pooled connection
    # should cost a reconnect, not a failed activity attempt.
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)
