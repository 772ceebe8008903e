"""Shielded work under repeated cancellation: deferred once, acted on once.

A compensating saga can be cancelled again (a second cancel request, the
`cancel` update, the UI's Cancel) while its undos run shielded. None of that
may issue a command twice or cancel an undo, and the history must replay.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError
from temporalio.worker import Worker

from domain.activities import Act, ChargePayment, RefundPayment
from domain.order_saga import SagaState
from domain.saga import CancelRequest
from history_corpus.steps import steps_of
from temporal_client import replayer
from tests import factories
from tests.factories import eventually
from wiring.activities import all_activities
from workflows.compensation import shielded

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]


@workflow.defn(name="ShieldProbe", sandboxed=False)
class ShieldProbe:
    """Shielded work that `poke` cancels, as the saga's cancel update does, until `release`."""

    def __init__(self) -> None:
        self._inner: asyncio.Task[int] | None = None
        self._released = False

    @workflow.run
    async def run(self) -> int:
        self._inner = asyncio.create_task(self._shielded_wait())
        return await self._inner

    async def _shielded_wait(self) -> int:
        await shielded(workflow.wait_condition(lambda: self._released), "waiting")
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    @workflow.signal
    def poke(self) -> None:
        if self._inner is not None:
            self._inner.cancel()

    @workflow.signal
    def release(self) -> None:
        self._released = True


async def task_completed(handle: Any) -> bool:
    history = await handle.fetch_history()
    return any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED for e in history.events)


async def test_cancellations_absorbed_by_a_shield_leave_no_count_on_the_task(client):
    queue = f"shield-{uuid.uuid4().hex[:8]}"

    # No cache: whichever worker runs the next task replays, none waits for a sticky one.
    def probe() -> Worker:
        return Worker(client, task_queue=queue, workflows=[ShieldProbe], max_cached_workflows=0)

    async with probe():
        handle = await client.start_workflow(
            ShieldProbe.run, id=f"shield-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        await eventually(lambda: task_completed(handle), bool)
    # With no worker, both pokes wait for one workflow task: two cancel() calls, one throw.
    await handle.signal(ShieldProbe.poke)
    await handle.signal(ShieldProbe.poke)
    async with probe():
        await handle.signal(ShieldProbe.poke)
        await handle.signal(ShieldProbe.release)
        left = await handle.result()

    assert left == 0


def scheduled(history: Any) -> Counter[str]:
    return Counter(steps_of(history))


def count_of(history: Any, kind: Any) -> int:
    return sum(e.event_type == kind for e in history.events)


def held(real: Any, name: str, model: type, started: asyncio.Event, go: asyncio.Event) -> Any:
    """The real activity, held at its start until the test lets it go."""

    async def hold(cmd: Any) -> Any:
        started.set()
        await go.wait()
        return await real(cmd)

    hold.__annotations__ = {"cmd": model, "return": Any}  # how Temporal decodes the input
    return activity.defn(name=name)(hold)


async def test_cancelled_again_while_undoing_each_undo_runs_once(
    saga, product, engine, settings, provider_client, custom_worker
):
    real = all_activities(engine, settings, provider_client)
    charging, charge = asyncio.Event(), asyncio.Event()
    refunding, refund = asyncio.Event(), asyncio.Event()
    queue = await custom_worker(
        {
            Act.CHARGE_PAYMENT: held(
                real[Act.CHARGE_PAYMENT], Act.CHARGE_PAYMENT, ChargePayment, charging, charge
            ),
            Act.REFUND_PAYMENT: held(
                real[Act.REFUND_PAYMENT], Act.REFUND_PAYMENT, RefundPayment, refunding, refund
            ),
        }
    )
    sku = await product(stock=5, price=1000)
    handle = await saga([(sku, 1)], task_queue=queue)

    # Cancelled while the charge runs; then, while its refund runs, again twice
    # by request and once by update.
    await asyncio.wait_for(charging.wait(), 20)
    await handle.cancel()
    charge.set()
    await asyncio.wait_for(refunding.wait(), 20)
    await handle.cancel()
    accepted = await handle.execute_update("cancel", CancelRequest(reason="and again"))
    await handle.cancel()
    refund.set()

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
        # create_shipment was never begun, but a lost workflow task could have
        # run it as a local step: its undo fences it, and finds nothing to undo.
        "cancel_shipment": 1,
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
