"""The servers `make run` starts itself: each one settings name no address for.

PostgreSQL without DATABASE_URL, the Temporal dev server without
TEMPORAL_ADDRESS, NATS (one node, or a JetStream cluster when the stream is
replicated) without NATS_URL. The supervisor (stack.run) decides which, owns
them and stops them; here each is built from the settings, and all are
started together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from settings import Settings
from stack.nats import NatsServer
from stack.nats import cluster as nats_cluster
from stack.ports import free_port
from stack.postgres import EmbeddedPostgres
from stack.process import ManagedProcess
from stack.temporal import SEARCH_ATTRIBUTES, TemporalDevServer


class Server(Protocol):
    process: ManagedProcess

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def postgres_for(s: Settings, data: Path, logs: Path) -> EmbeddedPostgres:
    return EmbeddedPostgres(
        data / "postgres",
        s.pg_port,
        s.pg_database,
        s.pg_max_prepared_transactions,
        logs,
        s.pg_max_slot_wal_keep_mb,
    )


def temporal_for(s: Settings, data: Path, logs: Path) -> TemporalDevServer:
    return TemporalDevServer(
        s.temporal_port,
        s.temporal_ui_port,
        data / "temporal.db",
        logs,
        SEARCH_ATTRIBUTES,
        namespace=s.temporal_namespace,
        sqlite_pragmas=s.temporal_sqlite_pragmas,
    )


def nats_for(s: Settings, data: Path, logs: Path) -> list[NatsServer]:
    """One node, or as many as the stream has replicas."""
    if s.nats_stream_replicas > 1:
        # Node 1 on the configured port, the others and every route on free ones.
        extra = [free_port() for _ in range(s.nats_stream_replicas - 1)]
        routes = [free_port() for _ in range(s.nats_stream_replicas)]
        return nats_cluster([s.nats_port, *extra], routes, data / "nats-cluster", logs)
    return [NatsServer(s.nats_port, data / "nats", logs)]


async def start_together(servers: Sequence[Server]) -> None:
    """Start them all, then raise the first failure, if any."""
    # Concurrently: they don't depend on each other, and startup is mostly waiting.
    results = await asyncio.gather(*(s.start() for s in servers), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
