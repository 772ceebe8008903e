"""Runs the saga workers the composition root (wiring.root) builds, until SIGTERM or SIGINT.

    python worker.py                      # every bulkhead in this process
    python worker.py --bulkhead payments  # one; repeat the flag for more

The base worker (bulkhead `orders`) runs the workflows and their LOCAL steps as
local activities, each service's within its own pool and concurrency limit.
Each other bulkhead (domain.bulkheads) gets its own task queue, activity slots
and database pool for REMOTE steps (and for the regular activities of sagas
begun before local steps); the payments bulkhead also owns the provider's HTTP
pool and circuit breaker.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.provider_client import PaymentProviderClient
from db.relay_ring import close_engine
from domain.bulkheads import Bulkhead
from observability.logs import configure as configure_logging
from observability.temporal_metrics import prometheus_runtime
from observability.tracing import configure as configure_tracing
from settings import Settings
from startup import load_settings, require
from temporal_client import connect, ensure_search_attributes
from wiring.activities import payment_provider_client
from wiring.order_hooks import order_log_fields
from wiring.root import background_tasks, open_bulkheads, parse_bulkheads, running

log = logging.getLogger("worker")


async def serve(settings: Settings, bulkheads: list[Bulkhead]) -> None:
    runtime = None
    metrics = settings.metrics("worker")
    if metrics.enabled:
        # Every metric of this process, the SDK's and ours, on one endpoint.
        runtime = prometheus_runtime(metrics.host, metrics.port)
    client = await connect(settings.temporal(), wait_seconds=60, runtime=runtime)
    await ensure_search_attributes(client, settings.temporal_namespace)
    provider = payment_provider_client(
        settings.provider(), runtime.metric_meter if runtime else None
    )
    workers, engines = open_bulkheads(client, settings, provider, bulkheads)
    try:
        await _serve_until_stopped(settings, client, workers, engines, provider)
    finally:
        await provider.aclose()
        for engine in engines.values():
            await close_engine(engine)
    log.info("worker stopped")


async def _serve_until_stopped(
    settings: Settings,
    client: Client,
    workers: list[Worker],
    engines: dict[Bulkhead, AsyncEngine],
    provider: PaymentProviderClient,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = await background_tasks(settings, client, engines, provider)
    for worker in workers:
        log.info(
            "worker serving task queue %r on %s: %d workflow(s), %d activities, %d slots",
            worker.task_queue,
            settings.temporal_target,
            len(worker.config().get("workflows") or []),
            len(worker.config().get("activities") or []),
            worker.config().get("max_concurrent_activities"),
        )
    try:
        async with running(workers):
            await stop.wait()
            log.info("stopping: finishing in-flight tasks")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--bulkhead",
        action="append",
        default=[],
        help="orders, inventory, payments, shipping or all (default: SAGA_WORKER_BULKHEADS)",
    )
    parser.add_argument("--deployment", help="Worker Deployment name (SAGA_WORKER_DEPLOYMENT_NAME)")
    parser.add_argument("--build-id", help="this version's build id (SAGA_WORKER_BUILD_ID)")
    args = parser.parse_args(argv)
    versioning = {
        key: value
        for key, value in (
            ("worker_deployment_name", args.deployment),
            ("worker_build_id", args.build_id),
        )
        if value is not None
    }
    settings = load_settings("worker.py", needs="worker", **versioning)
    try:
        bulkheads = parse_bulkheads(args.bulkhead or [settings.worker_bulkheads])
    except ValueError as err:
        parser.error(str(err))
    if Bulkhead.PAYMENTS in bulkheads:
        require(settings, "worker.py", "payments")
    configure_logging(settings.logs(), "worker", correlate=order_log_fields)
    configure_tracing(settings.tracing(), "worker")
    asyncio.run(serve(settings, bulkheads))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK's native runtime sometimes aborts the interpreter at exit after
    # all work is done; leave without running that teardown.
    os._exit(0)


if __name__ == "__main__":
    main()
