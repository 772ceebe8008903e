"""A throwaway stack for tools that need real servers briefly (recorder, benchmarks).

PostgreSQL (migrated), an in-memory Temporal dev server with the project's
search attributes, and the payment provider simulator, on free ports in a
temporary directory; `make run`'s servers and data are never touched.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from db.migrate import upgrade
from payment_provider.embedded import EmbeddedProvider
from settings import Settings
from stack.ports import free_port
from stack.postgres import EmbeddedPostgres
from stack.temporal import SEARCH_ATTRIBUTES, TemporalDevServer


@asynccontextmanager
async def throwaway_stack(
    prefix: str, max_prepared_transactions: int = 64, **settings: Any
) -> AsyncIterator[Settings]:
    """Yield settings pointing at the fresh servers; `settings` are further fields."""
    workdir = Path(tempfile.mkdtemp(prefix=f"saga-{prefix}-"))
    logs = workdir / "logs"
    postgres = EmbeddedPostgres(
        workdir / "pg", free_port(), prefix.replace("-", "_"), max_prepared_transactions, logs
    )
    temporal = TemporalDevServer(
        free_port(), free_port(), None, logs, SEARCH_ATTRIBUTES, headless=True
    )
    provider = EmbeddedProvider(free_port())
    try:
        await asyncio.gather(postgres.start(), temporal.start(), provider.start())
        await asyncio.to_thread(upgrade, postgres.url)
        yield Settings(
            temporal_address=temporal.address,
            database_url=postgres.url,
            payment_provider_url=provider.url,
            data_dir=workdir,
            **settings,
        )
    finally:
        await asyncio.gather(
            temporal.stop(), postgres.stop(), provider.stop(), return_exceptions=True
        )
