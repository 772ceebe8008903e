"""Running consumers in a process: connect to NATS and PostgreSQL, run until stopped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.consumer import Consumer, ConsumerStats, RunnerOptions
from consumers.metrics import ConsumerMetrics
from consumers.runner import ConsumerRunner
from db.engine import create_engine
from db.relay_ring import close_engine
from messaging.connection import connect
from messaging.stream import wait_for_stream
from security.nats_login import connection_name
from settings_slices import NatsConfig

log = logging.getLogger(__name__)

Background = Callable[[AsyncEngine, asyncio.Event], Coroutine[Any, Any, None]]


async def serve(
    database_url: str,
    nats: NatsConfig,
    consumers: Sequence[Consumer],
    stop: asyncio.Event,
    options: RunnerOptions | None = None,
    *,
    instances: int = 1,
    background: Sequence[Background] = (),
    metrics: ConsumerMetrics | None = None,
) -> None:
    """Run `consumers` until `stop` is set, and `background` tasks beside them.

    Each runner applies one message at a time; `instances` runners pull from
    each consumer's durable at once. `metrics` serves what they did.
    """
    client = await connect(nats, "saga-consumers", stop)
    if client is None:
        return
    log.info("nats connected: %s", connection_name(client, nats))
    engine = create_engine(
        database_url, pool_size=max(2, len(consumers) * instances + len(background))
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
        await close_engine(engine)
