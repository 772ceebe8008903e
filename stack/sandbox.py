"""The whole system `make run` starts, on free ports in a temporary directory.

For the load benchmark and the chaos run: the same supervisor, servers and app
processes (worker, relay, consumers, API, payment simulator) under the same
supervision (a crashed app is restarted), with the Temporal dev server on
SQLite so it can be restarted without losing sagas.
`make run`'s ports and data are never touched, and settings from the caller's
environment (DATABASE_URL, SAGA_*) do not leak in.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from settings import Settings
from stack.errors import StackError
from stack.ports import free_port
from stack.run import Supervisor, project_root

_PORTS = (
    "temporal_port",
    "temporal_ui_port",
    "pg_port",
    "nats_port",
    "api_port",
    "payment_provider_port",
    "worker_metrics_port",
    "relay_metrics_port",
    "consumers_metrics_port",
    "choreography_metrics_port",
)
_EXTERNAL = ("TEMPORAL_ADDRESS", "DATABASE_URL", "NATS_URL")


class _Isolated(Settings):
    """Settings from what is passed in and the defaults, never from the environment."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def child_env(fields: dict[str, Any]) -> dict[str, str]:
    """Settings fields as the children's SAGA_* variables; pydantic-settings reads a
    dict or list field as JSON, which str() of one is not."""
    return {
        f"SAGA_{key.upper()}": json.dumps(value) if isinstance(value, dict | list) else str(value)
        for key, value in fields.items()
    }


@asynccontextmanager
async def sandbox(prefix: str, keep: bool = False, **fields: Any) -> AsyncIterator[Supervisor]:
    """Start everything; `fields` are further settings (for the children too).

    Should a part crash-loop or a server die, the block is cancelled and this
    raises StackError saying which. The working directory (data and logs) is
    removed afterwards unless `keep`."""
    workdir = Path(tempfile.mkdtemp(prefix=f"saga-{prefix}-"))
    values: dict[str, Any] = {name: free_port() for name in _PORTS}
    values.update(data_dir=workdir, **fields)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _EXTERNAL and not key.startswith("SAGA_")
    }
    env.update(child_env(values))
    # The embedded servers, and the children's settings alone: not the caller's environment.
    settings = _Isolated(
        temporal_address=None, database_url=None, nats_url=None, payment_provider_url=None, **values
    )
    supervisor = Supervisor(settings, project_root(), env=env, app_logs_to_files=True)
    host = asyncio.current_task()
    assert host is not None
    given_up: list[str] = []
    watching: asyncio.Future[str] | None = None

    def give_up(done: asyncio.Future[str]) -> None:
        if done.cancelled():
            return
        error = done.exception()
        given_up.append(done.result() if error is None else f"supervision failed: {error!r}")
        host.cancel()  # what the block does against a broken system is moot

    try:
        await supervisor.start()
        watching = asyncio.ensure_future(supervisor.supervision.run())
        watching.add_done_callback(give_up)
        try:
            yield supervisor
        except asyncio.CancelledError:
            if not given_up:
                raise
            host.uncancel()
            raise StackError(given_up[0]) from None
    finally:
        if watching is not None:
            watching.remove_done_callback(give_up)
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        await supervisor.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
