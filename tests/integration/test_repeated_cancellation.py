"""Shielded work under repeated cancellation: deferred once, acted on once.

A compensating saga can be cancelled again (a second cancel request, the
`cancel` update, the UI's Cancel) while its undos run shielded. None of that
may issue a command twice or cancel an undo, and the history must replay.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.worker import Worker

from domain.activities import Act
from domain.saga import CancelRequest, SagaState
from temporal_client import replayer
from tests import factories
from tests.factories import eventually
from workflows.compensation import shielded

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]


@workflow.defn(name="ShieldProbe", sandboxed=False)
class ShieldProbe:
    """Shielded work that the `poke` signal cancels, as the saga's cancel update does."""

    def __init__(self) -> None:
        self._inner: asyncio.Task[int] | None = None

    @workflow.run
    async def run(self) -> int:
        self._inner = asyncio.create_task(self._shielded_sleep())
        return await self._inner

    async def _shielded_sleep(self) -> int:
        await shielded(workflow.sleep(timedelta(seconds=2)), "sleeping")
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    @workflow.signal
    def poke(self) -> None:
        if self._inner is not None:
            self._inner.cancel()


async def test_cancellations_absorbed_by_a_shield_leave_no_count_on_the_task(client):
    queue = f"shield-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[ShieldProbe]):
        handle = await client.start_workflow(
            ShieldProbe.run, id=f"shield-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        # Two in one workflow task, then one more: three cancel() calls in all.
        await asyncio.gather(handle.signal(ShieldProbe.poke), handle.signal(ShieldProbe.poke))
        await handle.signal(ShieldProbe.poke)
        left = await handle.result()

    assert left == 0


def scheduled(history: Any) -> Counter[str]:
    return Counter(
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    )


def count_of(history: Any, kind: Any) -> int:
    return sum(e.event_type == kind for e in history.events)


async def test_cancelled_again_while_undoing_each_undo_runs_once(
    saga, product, engine, provider_admin
):
    # The charge is slow enough to be cancelled during, the refund slow enough
    # to be cancelled again during.
    for fault in (
        {"mode": "latency", "seconds": 1.5, "count": 1, "path_contains": "/v1/authorizations"},
        {"mode": "latency", "seconds": 3.0, "count": 1, "path_contains": "/v1/refunds"},
    ):
        assert (await provider_admin.post("/admin/faults", json=fault)).status_code == 201
    sku = await product(stock=5, price=1000)
    handle = await saga([(sku, 1)])

    async def at(step: str) -> bool:
        state: SagaState = await handle.query("state", result_type=SagaState)
        return state.current_step == step

    await eventually(lambda: at(Act.CHARGE_PAYMENT), bool)
    await handle.cancel()
    await eventually(lambda: at(Act.REFUND_PAYMENT), bool)
    await handle.cancel()
    accepted = await handle.execute_update("cancel", CancelRequest(reason="and again"))
    await handle.cancel()

    with pytest.raises(WorkflowFailureError) as ended:
        await handle.result()
    assert isinstance(ended.value.cause, CancelledError)
    assert accepted is not None
    history = await handle.fetch_history()
    assert scheduled(history) == {
        "create_order": 1,
        "check_fraud": 1,
        "reserve_stock": 1,
        "charge_payment": 1,
        "refund_payment": 1,
        "release_stock": 1,
        "cancel_order": 1,
    }
    # The charge was cancelled once (it had started); no undo ever was.
    assert count_of(history, EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED) == 1
    assert count_of(history, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED) == 1
    state: SagaState = await handle.query("state", result_type=SagaState)
    assert state.compensations == ["refund_payment", "release_stock", "cancel_order"]
    assert await factories.stock_of(engine, sku) == 5
    [payment] = await factories.payments_of(engine, state.order_id)
    assert payment.status == "REFUNDED"
    replayed = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure
