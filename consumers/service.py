"""Running consumers in a process: connect to NATS and PostgreSQL, run until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.metrics import MetricsEndpoint
from consumers.runner import Consumer, ConsumerRunner, ConsumerStats, RunnerOptions
from db.engine import create_engine
from messaging.stream import wait_for_stream
from security.nats_login import connection_name, login_options
from settings import Settings

log = logging.getLogger(__name__)

_RECONNECT_WAIT_S = 2.0


async def connect_nats(settings: Settings, stop: asyncio.Event) -> NatsClient | None:
    """Connect, retrying until the server answers; None if `stop` is set first.

    The client keeps reconnecting after a lost connection too, for as long as
    the process runs.
    """

    async def error(err: Exception) -> None:
        # The client's default prints a traceback for every refused connect.
        log.warning("nats: %r", err)

    async def disconnected() -> None:
        if not stop.is_set():  # not our own close on the way out
            log.warning("nats: disconnected; reconnecting")

    async def reconnected() -> None:
        log.info("nats: reconnected")

    connecting = asyncio.ensure_future(
        nats.connect(
            settings.nats_target,
            **login_options(settings),
            name="saga-consumers",
            max_reconnect_attempts=-1,
            reconnect_time_wait=_RECONNECT_WAIT_S,
            error_cb=error,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
        )
    )
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if connecting.done():
        return connecting.result()
    connecting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await connecting
    return None


Background = Callable[[AsyncEngine, asyncio.Event], Coroutine[Any, Any, None]]


async def serve(
    settings: Settings,
    consumers: Sequence[Consumer],
    stop: asyncio.Event,
    options: RunnerOptions | None = None,
    *,
    instances: int = 1,
    background: Sequence[Background] = (),
    metrics: MetricsEndpoint | None = None,
) -> None:
    """Run `consumers` until `stop` is set, and `background` tasks beside them.

    Each runner applies one message at a time; `instances` runners pull from
    each consumer's durable at once. `metrics` serves what they did.
    """
    client = await connect_nats(settings, stop)
    if client is None:
        return
    log.info("nats connected: %s", connection_name(client, settings))
    engine = create_engine(
        settings.database_target, pool_size=max(2, len(consumers) * instances + len(background))
    )
    stats = ConsumerStats()
    exporter: asyncio.Server | None = None
    try:
        js = client.jetstream()
        if not await wait_for_stream(js, stop):
            return
        if metrics is not None:
            names = [consumer.name for consumer in consumers]
            exporter = await metrics.start(js, engine, stats, names)
        async with asyncio.TaskGroup() as tasks:
            for consumer in consumers:
                for _ in range(instances):
                    runner = ConsumerRunner(js, engine, consumer, options, stats)
                    tasks.create_task(runner.run(stop))
            for task in background:
                tasks.create_task(task(engine, stop))
    finally:
        if exporter is not None:
            exporter.close()
        await client.close()
        await engine.dispose()
