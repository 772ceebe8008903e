"""The worker's gauges that alerts watch (deploy/prometheus/alerts.yml), scraped from a real
SDK Prometheus endpoint: stuck sagas as Temporal sees them, 2PC transactions the recovery
sweep leaves open past its grace, and sweeps that fail."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from temporalio.client import Client

from audit.checks import Scope
from audit.watch import StuckSagaGauge, check_once, check_or_count
from db.engine import create_engine
from domain.two_phase import TwoPhaseInput, coordinator_workflow_id
from observability.temporal_metrics import prometheus_runtime
from recovery.metrics import RecoveryMetrics
from recovery.sweep import run_periodically
from stack.ports import LOOPBACK, free_port
from tests import factories
from tests.conftest import start_saga
from tests.factories import eventually
from tests.integration.test_recovery import prepare_stock
from tests.prometheus import samples

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]
FAST = timedelta(milliseconds=100)


class Endpoint:
    """A runtime with the worker's Prometheus exporter on a free port, and its page."""

    def __init__(self) -> None:
        self.port = free_port()
        self.runtime = prometheus_runtime(LOOPBACK, self.port)

    async def value(self, name: str, **labels: str) -> list[float]:
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"http://{LOOPBACK}:{self.port}/metrics")).text
        return samples(text, name, **labels)

    async def becomes(self, name: str, expected: list[float], **labels: str) -> None:
        await eventually(lambda: self.value(name, **labels), lambda v: v == expected)


@contextlib.asynccontextmanager
async def sweeping(engine, client, card, metrics: RecoveryMetrics) -> AsyncIterator[None]:
    """The worker's periodic sweep, every 100 ms with no grace, for the block."""
    task = asyncio.create_task(
        run_periodically(engine, client, every=FAST, grace=timedelta(0), card=card, metrics=metrics)
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_saga_silent_past_the_grace_is_counted_stuck_until_it_ends(client):
    endpoint = Endpoint()
    gauge = StuckSagaGauge(endpoint.runtime.metric_meter)
    for saga_type in ("OrderSaga", "TwoPhaseCommit"):
        await endpoint.becomes("saga_stuck_sagas", [0], workflow_type=saga_type)
    since = datetime.now(UTC) - timedelta(seconds=1)
    orphan = await start_saga(client, f"nobody-{uuid.uuid4().hex[:8]}", [("NONE", 1)])
    try:
        silent = Scope(since=since, grace=timedelta(seconds=1))
        await eventually(lambda: check_once(client, gauge, silent), lambda c: c["OrderSaga"] == 1)
        await endpoint.becomes("saga_stuck_sagas", [1], workflow_type="OrderSaga")
        await endpoint.becomes("saga_stuck_sagas", [0], workflow_type="TwoPhaseCommit")

        # Within a longer grace its silence is no more than slowness.
        await check_once(client, gauge, Scope(since=since, grace=timedelta(minutes=1)))
        await endpoint.becomes("saga_stuck_sagas", [0], workflow_type="OrderSaga")
    finally:
        await orphan.terminate("test over")
    await eventually(lambda: check_once(client, gauge, silent), lambda c: c["OrderSaga"] == 0)
    await endpoint.becomes("saga_stuck_sagas", [0], workflow_type="OrderSaga")


async def test_a_branch_its_coordinator_does_not_finish_counts_open_until_recovered(
    engine, client, product, card
):
    endpoint = Endpoint()
    metrics = RecoveryMetrics(endpoint.runtime.metric_meter)
    await endpoint.becomes("saga_2pc_open_past_grace", [0])
    sku = await product(stock=5)
    call = await prepare_stock(engine, sku, 1)
    # Its coordinator runs but no worker serves it: the sweep must leave the branch to it.
    coordinator = await client.start_workflow(
        "TwoPhaseCommit",
        TwoPhaseInput(tx_id=call.tx_id, participants=[]),
        id=coordinator_workflow_id(call.tx_id),
        task_queue=f"idle-{uuid.uuid4().hex[:8]}",
    )
    async with sweeping(engine, client, card, metrics):
        await endpoint.becomes("saga_2pc_open_past_grace", [1])
        assert await factories.prepared_branches(engine, call.tx_id) == [call.gid]

        # The coordinator lost: the next round presumes abort and nothing stays open.
        await coordinator.terminate("test: coordinator lost")
        await endpoint.becomes("saga_2pc_open_past_grace", [0])
    assert await factories.prepared_branches(engine, call.tx_id) == []
    assert await factories.stock_of(engine, sku) == 5
    assert await endpoint.value("saga_recovery_failed_sweeps_total") == [0]


async def test_a_sweep_that_cannot_reach_the_database_is_counted_failed(client, card):
    endpoint = Endpoint()
    metrics = RecoveryMetrics(endpoint.runtime.metric_meter)
    metrics.swept(3)  # what the last good round left open
    # A PostgreSQL that is not there: every round fails as a whole.
    gone = create_engine(f"postgresql+asyncpg://nobody@{LOOPBACK}:{free_port()}/saga")
    try:
        async with sweeping(gone, client, card, metrics):
            await eventually(
                lambda: endpoint.value("saga_recovery_failed_sweeps_total"),
                lambda v: len(v) == 1 and v[0] >= 2,
            )
    finally:
        await gone.dispose()
    # Nothing new is known: the gauge keeps what the last good round said.
    assert await endpoint.value("saga_2pc_open_past_grace") == [3]


async def test_a_stuck_saga_check_that_cannot_ask_temporal_is_counted(client):
    endpoint = Endpoint()
    gauge = StuckSagaGauge(endpoint.runtime.metric_meter)
    await endpoint.becomes("saga_stuck_checks_failed_total", [0])
    # A namespace Temporal does not know: the visibility query fails as when it is away.
    blind = Client(client.service_client, namespace=f"nowhere-{uuid.uuid4().hex[:8]}")

    await check_or_count(blind, gauge, Scope(grace=timedelta(seconds=1)))
    await check_or_count(blind, gauge, Scope(grace=timedelta(seconds=1)))

    await endpoint.becomes("saga_stuck_checks_failed_total", [2])
    await check_or_count(client, gauge, Scope(grace=timedelta(minutes=1)))
    await endpoint.becomes("saga_stuck_checks_failed_total", [2])  # a good round adds nothing
