"""Runs the saga worker: wiring only (client, engine, activities, Worker)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities import all_activities
from db.engine import create_engine
from recovery.sweep import run_periodically
from settings import Settings
from temporal_client import connect, ensure_search_attributes
from workflows import WORKFLOWS

log = logging.getLogger("worker")


def build_worker(
    client: Client,
    task_queue: str,
    activities: Iterable[Callable[..., Any]],
    max_concurrent_activities: int = 100,
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=list(activities),
        max_concurrent_activities=max_concurrent_activities,
        # Activities are short transactions: let in-flight ones commit on SIGTERM
        # rather than be cancelled and retried by the next worker.
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


async def serve(settings: Settings) -> None:
    client = await connect(settings, wait_seconds=60)
    await ensure_search_attributes(client, settings.temporal_namespace)
    engine = create_engine(settings.database_target, pool_size=settings.db_pool_size)
    activities = list(all_activities(engine, settings).values())
    worker = build_worker(
        client, settings.task_queue, activities, settings.worker_max_concurrent_activities
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker serving task queue %r on %s: workflows %s, %d activities",
        settings.task_queue,
        settings.temporal_target,
        [w.__name__ for w in WORKFLOWS],
        len(activities),
    )
    recovery = asyncio.create_task(
        run_periodically(
            engine,
            client,
            every=timedelta(seconds=settings.recovery_interval_s),
            grace=timedelta(seconds=settings.recovery_grace_s),
        )
    )
    async with worker:
        await stop.wait()
        log.info("stopping: finishing in-flight tasks")
        recovery.cancel()
    await engine.dispose()
    log.info("worker stopped")


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(settings))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK's native runtime sometimes aborts the interpreter at exit after
    # all work is done; leave without running that teardown.
    os._exit(0)


if __name__ == "__main__":
    main()
