"""Runs the saga workers: wiring only (client, engines, activities, one Worker per bulkhead).

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
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.worker import Worker, WorkerDeploymentConfig, WorkerDeploymentVersion

from activities import all_activities, card_participant, payment_provider_client
from activities.provider_client import PaymentProviderClient
from audit.watch import StuckSagaGauge, watch_stuck_sagas
from db.engine import create_engine
from db.relay_ring import close_engine
from domain.bulkheads import BULKHEAD_OF, FINISHING, Bulkhead, queue_name
from observability.logs import configure as configure_logging
from observability.temporal_metrics import prometheus_runtime
from observability.tracing import configure as configure_tracing
from recovery.metrics import RecoveryMetrics
from recovery.sweep import run_periodically
from resilience.concurrency import ConcurrencyLimit
from resilience.local_bulkheads import LocalBulkheads
from settings import Settings
from startup import load_settings, require
from temporal_client import WORKER_INTERCEPTORS, connect, ensure_search_attributes
from wiring.order_hooks import order_log_fields
from workflows.registry import WORKFLOWS
from workflows.versioned import VERSIONED_WORKFLOWS

log = logging.getLogger("worker")


def build_worker(
    client: Client,
    bulkhead: Bulkhead,
    base_queue: str,
    activities: Mapping[str, Callable[..., Any]],
    max_concurrent_activities: int = 100,
    deployment: WorkerDeploymentConfig | None = None,
    local: LocalBulkheads | None = None,
) -> Worker:
    """The worker of one bulkhead: its queue, its activities, its slots.

    The base queue's worker runs the workflows and, as local activities, their
    LOCAL steps, each service's within its limit (`local`). It also registers
    every other activity: tasks that sagas started by an earlier release
    scheduled on the base queue (an undo retrying for hours) must still find a
    worker after an upgrade.
    """
    base = bulkhead is Bulkhead.ORDERS
    local = local or LocalBulkheads({})
    return Worker(
        client,
        task_queue=queue_name(base_queue, bulkhead),
        workflows=list(VERSIONED_WORKFLOWS if deployment else WORKFLOWS) if base else [],
        activities=[
            fn
            for name, fn in activities.items()
            if base or BULKHEAD_OF.get(name, Bulkhead.ORDERS) is bulkhead
        ],
        interceptors=[*WORKER_INTERCEPTORS, local] if base else WORKER_INTERCEPTORS,
        deployment_config=deployment,
        max_concurrent_activities=max_concurrent_activities,
        max_concurrent_local_activities=max(local.slots, 1),
        # Activities are short transactions: let in-flight ones commit on SIGTERM
        # rather than be cancelled and retried by the next worker.
        graceful_shutdown_timeout=timedelta(seconds=10),
    )


def build_workers(
    client: Client,
    base_queue: str,
    activities: Mapping[str, Callable[..., Any]],
    settings: Settings | None = None,
) -> list[Worker]:
    """Every bulkhead in one process, sharing `activities` and their engine (benchmarks)."""
    settings = settings or Settings()
    slots, local = bulkhead_slots(settings), local_bulkheads(settings)
    return [
        build_worker(client, b, base_queue, activities, slots[b], None, local) for b in Bulkhead
    ]


def open_bulkheads(
    client: Client,
    settings: Settings,
    provider: PaymentProviderClient,
    bulkheads: Iterable[Bulkhead] = tuple(Bulkhead),
    stand_ins: Mapping[str, Callable[..., Any]] | None = None,
) -> tuple[list[Worker], dict[Bulkhead, AsyncEngine]]:
    """One worker per bulkhead, and a database pool per service; dispose the engines.

    The base worker runs every service's LOCAL steps, so where it runs every
    service gets its pool; elsewhere a bulkhead's worker has only its own.
    """
    chosen = list(bulkheads)
    engines: dict[Bulkhead, AsyncEngine] = {}
    for service in Bulkhead if Bulkhead.ORDERS in chosen else chosen:
        pool_size = getattr(settings, f"{service.value}_db_pool_size")
        url = settings.bulkhead_database_target(service.value)
        engines[service] = create_engine(url, pool_size=pool_size)
    own = {b: all_activities(engines[b], settings, provider) for b in engines}
    slots, deployment = bulkhead_slots(settings), deployment_config(settings)
    workers = []
    for bulkhead in chosen:
        activities = own[bulkhead]
        if bulkhead is Bulkhead.ORDERS:
            # Each activity bound to its own service's pool.
            activities = {
                name: own[BULKHEAD_OF.get(name, Bulkhead.ORDERS)][name] for name in activities
            }
        activities = {**activities, **(stand_ins or {})}
        workers.append(
            build_worker(
                client,
                bulkhead,
                settings.task_queue,
                activities,
                slots[bulkhead],
                deployment,
                local_bulkheads(settings),
            )
        )
    return workers, engines


def local_bulkheads(settings: Settings) -> LocalBulkheads:
    """Two concurrency limits per service: its forward steps', and its finishing
    steps' (undos, 2PC phase 2: domain.bulkheads.FINISHING), each the service's size."""
    wait_s = settings.local_step_max_wait_ms / 1000

    def limit(b: Bulkhead, kind: str) -> ConcurrencyLimit:
        size = getattr(settings, f"{b.value}_max_concurrent_local_steps")
        return ConcurrencyLimit(f"{b.value} {kind}", size, wait_s)

    forward = {b: limit(b, "steps") for b in Bulkhead}
    finishing = {b: limit(b, "undos and 2PC phase 2") for b in Bulkhead}
    return LocalBulkheads(
        {name: (finishing if name in FINISHING else forward)[b] for name, b in BULKHEAD_OF.items()}
    )


def deployment_config(settings: Settings) -> WorkerDeploymentConfig | None:
    """This process as one version of a Worker Deployment, when settings name one.

    Every bulkhead's worker joins the same version: a versioned workflow's
    activities are dispatched to workers of its own version, on every queue.
    The workflows' behaviours come with the classes a versioned worker
    registers (workflows.versioned), so no default is set here.
    """
    if settings.worker_deployment_name is None or settings.worker_build_id is None:
        return None
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(
            deployment_name=settings.worker_deployment_name, build_id=settings.worker_build_id
        ),
        use_worker_versioning=True,
    )


def bulkhead_slots(settings: Settings) -> dict[Bulkhead, int]:
    return {b: getattr(settings, f"{b.value}_max_concurrent_activities") for b in Bulkhead}


@contextlib.asynccontextmanager
async def running(workers: Iterable[Worker]) -> AsyncIterator[list[Worker]]:
    """Run `workers` for the duration of the block; on exit each finishes in-flight tasks."""
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        yield list(workers)


def parse_bulkheads(values: Iterable[str]) -> list[Bulkhead]:
    chosen: list[Bulkhead] = []
    for value in values:
        for name in filter(None, (part.strip() for part in value.split(","))):
            if name == "all":
                return list(Bulkhead)
            try:
                chosen.append(Bulkhead(name))
            except ValueError:
                names = ", ".join([*(b.value for b in Bulkhead), "all"])
                raise ValueError(f"unknown bulkhead {name!r}: choose from {names}") from None
    return list(dict.fromkeys(chosen)) or list(Bulkhead)


async def serve(settings: Settings, bulkheads: list[Bulkhead]) -> None:
    runtime = None
    if settings.worker_metrics_port:
        # Every metric of this process, the SDK's and ours, on one endpoint.
        runtime = prometheus_runtime(settings.worker_metrics_host, settings.worker_metrics_port)
    client = await connect(settings, wait_seconds=60, runtime=runtime)
    await ensure_search_attributes(client, settings.temporal_namespace)
    provider = payment_provider_client(settings, runtime.metric_meter if runtime else None)
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
    tasks = await _background(settings, client, engines, provider)
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


async def _background(
    settings: Settings,
    client: Client,
    engines: Mapping[Bulkhead, AsyncEngine],
    provider: PaymentProviderClient,
) -> list[asyncio.Task[Any]]:
    """The recovery sweep and the stuck-saga check, beside the orders bulkhead: one
    process asks, and its metrics endpoint answers for the whole system."""
    tasks: list[asyncio.Task[Any]] = []
    if Bulkhead.ORDERS in engines:
        runtime = client.service_client.config.runtime or Runtime.default()
        every = timedelta(seconds=settings.recovery_interval_s)
        sweep = run_periodically(
            engines[Bulkhead.ORDERS],
            client,
            every=every,
            grace=timedelta(seconds=settings.recovery_grace_s),
            card=card_participant(engines[Bulkhead.ORDERS], settings, provider),
            metrics=RecoveryMetrics(runtime.metric_meter),
        )
        stuck = watch_stuck_sagas(
            client,
            StuckSagaGauge(runtime.metric_meter),
            every=every,
            grace=timedelta(seconds=settings.stuck_saga_grace_s),
        )
        tasks += [asyncio.create_task(sweep), asyncio.create_task(stuck)]
    return tasks


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
    configure_logging(settings, "worker", correlate=order_log_fields)
    configure_tracing(settings, "worker")
    asyncio.run(serve(settings, bulkheads))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK's native runtime sometimes aborts the interpreter at exit after
    # all work is done; leave without running that teardown.
    os._exit(0)


if __name__ == "__main__":
    main()
