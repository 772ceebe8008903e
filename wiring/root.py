"""The composition root: every worker process's parts, built from `Settings`.

`worker.py`, the benchmarks, the corpus recorder and the tests build their
workers here, as a process would: one Worker per bulkhead (domain.bulkheads),
each with its own task queue, activity slots and database pool, the base one
running the workflows and their LOCAL steps within each service's limits; and
the background tasks beside the orders bulkhead. What the activities are built
with is wiring.activities. Components below take their slice of the settings
(settings_slices); only this package and the entry points read `Settings`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.worker import Worker, WorkerDeploymentConfig, WorkerDeploymentVersion

from activities.provider_client import PaymentProviderClient
from audit.watch import StuckSagaGauge, watch_stuck_sagas
from db.engine import create_engine
from domain.bulkheads import BULKHEAD_OF, FINISHING, Bulkhead, queue_name
from recovery.metrics import RecoveryMetrics
from recovery.sweep import run_periodically
from resilience.concurrency import ConcurrencyLimit
from resilience.local_bulkheads import LocalBulkheads
from settings import Settings
from settings_slices import Deployment, WorkerSettings
from temporal_client import WORKER_INTERCEPTORS
from wiring.activities import all_activities, card_participant
from workflows.registry import WORKFLOWS
from workflows.versioned import VERSIONED_WORKFLOWS


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
    config = (settings or Settings()).worker()
    slots, local = bulkhead_slots(config), local_bulkheads(config)
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
    config = settings.worker()
    chosen = list(bulkheads)
    engines: dict[Bulkhead, AsyncEngine] = {}
    for service in Bulkhead if Bulkhead.ORDERS in chosen else chosen:
        own_share = config.bulkheads[service.value]
        engines[service] = create_engine(own_share.database_url, pool_size=own_share.pool_size)
    own = {b: all_activities(engines[b], settings, provider) for b in engines}
    slots, deployment = bulkhead_slots(config), deployment_config(config.deployment)
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
                config.task_queue,
                activities,
                slots[bulkhead],
                deployment,
                local_bulkheads(config),
            )
        )
    return workers, engines


def local_bulkheads(config: WorkerSettings) -> LocalBulkheads:
    """Two concurrency limits per service: its forward steps', and its finishing
    steps' (undos, 2PC phase 2: domain.bulkheads.FINISHING), each the service's size."""

    def limit(b: Bulkhead, kind: str) -> ConcurrencyLimit:
        size = config.bulkheads[b.value].max_local_steps
        return ConcurrencyLimit(f"{b.value} {kind}", size, config.local_step_max_wait_s)

    forward = {b: limit(b, "steps") for b in Bulkhead}
    finishing = {b: limit(b, "undos and 2PC phase 2") for b in Bulkhead}
    return LocalBulkheads(
        {name: (finishing if name in FINISHING else forward)[b] for name, b in BULKHEAD_OF.items()}
    )


def deployment_config(deployment: Deployment | None) -> WorkerDeploymentConfig | None:
    """This process as one version of a Worker Deployment, when settings name one.

    Every bulkhead's worker joins the same version: a versioned workflow's
    activities are dispatched to workers of its own version, on every queue.
    The workflows' behaviours come with the classes a versioned worker
    registers (workflows.versioned), so no default is set here.
    """
    if deployment is None:
        return None
    return WorkerDeploymentConfig(
        version=WorkerDeploymentVersion(
            deployment_name=deployment.name, build_id=deployment.build_id
        ),
        use_worker_versioning=True,
    )


def bulkhead_slots(config: WorkerSettings) -> dict[Bulkhead, int]:
    return {b: config.bulkheads[b.value].max_activities for b in Bulkhead}


@contextlib.asynccontextmanager
async def running(workers: Iterable[Worker]) -> AsyncIterator[list[Worker]]:
    """Run `workers` for the duration of the block; on exit each finishes in-flight tasks."""
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        yield list(workers)


async def background_tasks(
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
        recovery = settings.recovery()
        every = timedelta(seconds=recovery.interval_s)
        sweep = run_periodically(
            engines[Bulkhead.ORDERS],
            client,
            every=every,
            grace=timedelta(seconds=recovery.grace_s),
            card=card_participant(engines[Bulkhead.ORDERS], settings, provider),
            metrics=RecoveryMetrics(runtime.metric_meter),
        )
        stuck = watch_stuck_sagas(
            client,
            StuckSagaGauge(runtime.metric_meter),
            every=every,
            grace=timedelta(seconds=recovery.stuck_saga_grace_s),
        )
        tasks += [asyncio.create_task(sweep), asyncio.create_task(stuck)]
    return tasks


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
