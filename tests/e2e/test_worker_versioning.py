"""Rolling out a new worker version with Worker Deployments, as docs/evolving-sagas.md shows it.

Workers of build v1 serve a deployment; the `temporal` CLI makes v1 current; a
saga starts and is held mid-flight, and a 2PC order completes on v1. Then
workers of build v2 join and v2 is made current. The held saga (auto-upgrade)
finishes on v2, a new saga starts on v2, and the pinned 2PC coordinator stays
recorded on v1.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import VersioningBehavior
from temporalio.client import Client, WorkflowHandle

from domain.activities import Act, CreateShipment, ShipmentCreated
from domain.order_saga import SagaState
from domain.two_phase import coordinator_workflow_id
from stack.binaries import temporal_cli as temporal_cli_path
from tests import factories
from tests.conftest import start_saga
from wiring.activities import payment_provider_client
from wiring.root import open_bulkheads, running

pytestmark = pytest.mark.timeout(180)
TEMPORAL_CLI = str(temporal_cli_path())


async def temporal_cli(settings, *args: str) -> str:
    argv = [TEMPORAL_CLI, *args, "--address", settings.temporal_target, "--namespace", "default"]
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


async def make_current(settings, deployment: str, build_id: str) -> None:
    # A version is known once its workers have polled: retry until the server has seen them.
    for _ in range(60):
        argv = [
            TEMPORAL_CLI,
            "worker",
            "deployment",
            "set-current-version",
            "--deployment-name",
            deployment,
            "--build-id",
            build_id,
            "--yes",
            "--address",
            settings.temporal_target,
        ]
        done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True)
        if done.returncode == 0:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"could not make {deployment}:{build_id} current: {done.stderr}")


async def version_of(handle: WorkflowHandle[Any, Any]) -> tuple[str, int]:
    info = (await handle.describe()).raw_description.workflow_execution_info.versioning_info
    return info.deployment_version.build_id, info.behavior


async def test_a_new_version_takes_new_and_auto_upgrade_sagas_while_pinned_ones_stay(
    client: Client, settings, product, engine
):
    deployment = f"saga-{uuid.uuid4().hex[:8]}"
    queue = f"versioned-{uuid.uuid4().hex[:8]}"
    held = asyncio.Event()
    release = asyncio.Event()

    @activity.defn(name=Act.CREATE_SHIPMENT)
    async def slow_shipment(cmd: CreateShipment) -> ShipmentCreated:
        held.set()
        await release.wait()
        return ShipmentCreated(shipment_id=str(uuid.uuid4()), tracking_number="TRK-V1")

    v1 = settings.model_copy(
        update={"task_queue": queue, "worker_deployment_name": deployment, "worker_build_id": "v1"}
    )
    v2 = v1.model_copy(update={"worker_build_id": "v2"})
    provider = payment_provider_client(settings.provider())
    v1_workers, v1_engines = open_bulkheads(
        client, v1, provider, stand_ins={Act.CREATE_SHIPMENT: slow_shipment}
    )
    v2_workers, v2_engines = open_bulkheads(client, v2, provider)
    sku = await product(stock=10, price=1000)
    customer = await factories.insert_wallet(engine, balance=500)
    try:
        async with running(v1_workers):
            await make_current(settings, deployment, "v1")
            two_phase = await start_saga(
                client, queue, [(sku, 1)], customer_id=customer, store_credit=500
            )
            await asyncio.wait_for(held.wait(), 30)  # the 2PC order is held in shipping
            coordinator = client.get_workflow_handle(
                coordinator_workflow_id(two_phase.id.removeprefix("order-"))
            )
            await coordinator.result()
            async with running(v2_workers):
                await make_current(settings, deployment, "v2")
                fresh = await start_saga(client, queue, [(sku, 1)])
                fresh_state: SagaState = await fresh.result()
                release.set()
                held_state: SagaState = await two_phase.result()
    finally:
        await provider.aclose()
        for one in (*v1_engines.values(), *v2_engines.values()):
            await one.dispose()

    assert (fresh_state.status, held_state.status) == ("CONFIRMED", "CONFIRMED")
    assert await version_of(fresh) == ("v2", VersioningBehavior.VERSIONING_BEHAVIOR_AUTO_UPGRADE)
    # Started on v1, held there, finished on v2 after v2 became current.
    assert await version_of(two_phase) == (
        "v2",
        VersioningBehavior.VERSIONING_BEHAVIOR_AUTO_UPGRADE,
    )
    assert await version_of(coordinator) == ("v1", VersioningBehavior.VERSIONING_BEHAVIOR_PINNED)
    described = await temporal_cli(
        settings, "worker", "deployment", "describe", "--name", deployment
    )
    assert "v2" in described
