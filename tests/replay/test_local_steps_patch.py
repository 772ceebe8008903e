"""LOCAL steps became local activities behind `workflow.patched`: proof both ways.

Sagas recorded before it ran every step as a regular activity on its
bulkhead's queue; recorded after it, their LOCAL steps are local activity
markers and only the payment provider's steps (and the point of no return)
are scheduled. Both replay on today's code, and the same change made without
the patch cannot replay a saga begun before it: a running saga would fail
its next workflow task on the new workers.
"""

from __future__ import annotations

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.worker import Replayer

from domain.order_saga import SagaState
from domain.orders import PlaceOrder
from domain.two_phase import TwoPhaseInput, TwoPhaseOutcome
from temporal_client import DATA_CONVERTER, INTERCEPTORS, replayer
from tests.replay.histories import activities_of, patch_markers, recorded
from workflows.order_saga import OrderSaga
from workflows.steps import LOCAL_STEPS
from workflows.two_phase import TwoPhaseCommit

OLD = ["order_saga/confirmed@fraud-check", "order_saga/payment_declined@fraud-check"]
NEW = ["order_saga/confirmed@local-steps", "order_saga/payment_declined@local-steps"]


# Unsandboxed, as in test_fraud_check_patch: replay checks determinism all the same.
@workflow.defn(name="OrderSaga", sandboxed=False)
class LocalStepsWithoutPatch(OrderSaga):
    """The tempting version: local activities, unconditionally."""

    @workflow.run
    async def run(self, order: PlaceOrder) -> SagaState:
        return await super().run(order)

    def _local_steps(self) -> bool:
        return True


def scheduled(name: str) -> list[str]:
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in recorded(name).history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]


def test_old_sagas_scheduled_every_step_and_new_ones_only_the_remote_ones():
    old, new = "order_saga/confirmed@fraud-check", "order_saga/confirmed@local-steps"

    assert scheduled(old) == activities_of(recorded(old))
    assert not any(LOCAL_STEPS in marker for marker in patch_markers(recorded(old)))
    assert activities_of(recorded(new)) == [
        "create_order",
        "check_fraud",
        "reserve_stock",
        "charge_payment",
        "create_shipment",
        "confirm_order",
    ]
    assert scheduled(new) == ["charge_payment", "confirm_order"]
    assert any(LOCAL_STEPS in marker for marker in patch_markers(recorded(new)))


@pytest.mark.parametrize("name", OLD + NEW)
async def test_the_patched_saga_replays_histories_from_before_and_after(name):
    result = await replayer().replay_workflow(recorded(name).history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


@pytest.mark.parametrize("name", [*OLD, "order_saga/two_phase_committed@lock-order"])
async def test_the_same_change_without_the_patch_breaks_running_sagas(name):
    unpatched = Replayer(
        workflows=[LocalStepsWithoutPatch, TwoPhaseCommit],
        data_converter=DATA_CONVERTER,
        interceptors=INTERCEPTORS,
    )

    result = await unpatched.replay_workflow(recorded(name).history, raise_on_replay_failure=False)

    assert result.replay_failure is not None
    assert "Nondeterminism error" in str(result.replay_failure)


@workflow.defn(name="TwoPhaseCommit", sandboxed=False)
class CoordinatorWithoutPatch(TwoPhaseCommit):
    """The coordinator's log (and LOCAL participants) as local activities, unconditionally."""

    @workflow.run
    async def run(self, tx: TwoPhaseInput) -> TwoPhaseOutcome:
        return await super().run(tx)

    def _local_steps(self) -> bool:
        return True


@pytest.mark.parametrize("name", ["two_phase_commit/committed", "two_phase_commit/aborted"])
async def test_coordinators_begun_before_it_replay_and_break_without_the_patch(name):
    patched = await replayer().replay_workflow(
        recorded(name).history, raise_on_replay_failure=False
    )
    unpatched = Replayer(
        workflows=[OrderSaga, CoordinatorWithoutPatch],
        data_converter=DATA_CONVERTER,
        interceptors=INTERCEPTORS,
    )
    broken = await unpatched.replay_workflow(recorded(name).history, raise_on_replay_failure=False)

    assert patched.replay_failure is None, patched.replay_failure
    assert broken.replay_failure is not None
    assert "Nondeterminism error" in str(broken.replay_failure)


async def test_coordinators_begun_after_it_log_their_decision_locally():
    new = recorded("two_phase_commit/committed@local-steps")
    assert "record_decision" in activities_of(new)
    assert "record_decision" not in scheduled("two_phase_commit/committed@local-steps")
    result = await replayer().replay_workflow(new.history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
