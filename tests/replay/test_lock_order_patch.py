"""The coordinator's prepare in lock-rank order was added to running coordinators
behind `workflow.patched`: proof both ways, as for the fraud check.

Histories recorded before it prepared every participant at once; those after it
prepare store credit only once stock has answered. Both replay on today's code.
The ranks come in the coordinator's input, from the saga; during a rollout a
worker from before the change runs, all at once, a coordinator a saga from
after it started, with ranks. Without the patch, today's code cannot replay
that history; the tests build it from a recorded one.
"""

from __future__ import annotations

import base64
import json

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from domain.two_phase import TwoPhaseInput, TwoPhaseOutcome
from temporal_client import DATA_CONVERTER, INTERCEPTORS, replayer
from tests.replay.histories import Recorded, patch_markers, recorded
from workflows.settlement import LOCK_RANKS
from workflows.two_phase import PREPARE_IN_LOCK_ORDER, TwoPhaseCommit

OLD, NEW = "two_phase_commit/committed", "two_phase_commit/committed@lock-order"


# Unsandboxed, as in test_fraud_check_patch: replay checks determinism all the same.
@workflow.defn(name="TwoPhaseCommit", sandboxed=False)
class LockOrderWithoutPatch(TwoPhaseCommit):
    """The tempting version: ranked prepares, unconditionally."""

    @workflow.run
    async def run(self, tx: TwoPhaseInput) -> TwoPhaseOutcome:
        return await super().run(tx)

    def _prepares_in_lock_order(self) -> bool:
        return True


def started_by_a_newer_saga(one: Recorded) -> WorkflowHistory:
    """The history with its participants ranked, as the saga of today ranks them."""
    data = json.loads(one.history.to_json())
    payload = data["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
    tx = json.loads(base64.b64decode(payload["data"]))
    for participant in tx["participants"]:
        participant["lock_rank"] = LOCK_RANKS.get(participant["name"])
    payload["data"] = base64.b64encode(json.dumps(tx).encode()).decode()
    return WorkflowHistory.from_json(one.history.workflow_id, json.dumps(data))


def store_credit_asked_after_stock_answered(one: Recorded) -> bool:
    scheduled: dict[int, str] = {}
    stock_answered = credit_asked = None
    for n, event in enumerate(one.history.events):
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[event.event_id] = name
            if name == "prepare_store_credit":
                credit_asked = n
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attributes = event.activity_task_completed_event_attributes
            if scheduled.get(attributes.scheduled_event_id) == "prepare_stock":
                stock_answered = n
    assert stock_answered is not None and credit_asked is not None
    return stock_answered < credit_asked


def test_old_coordinators_prepared_at_once_and_new_ones_in_lock_order():
    old, new = recorded(OLD), recorded(NEW)

    assert not store_credit_asked_after_stock_answered(old) and patch_markers(old) == []
    assert store_credit_asked_after_stock_answered(new)
    assert any(PREPARE_IN_LOCK_ORDER in marker for marker in patch_markers(new))


@pytest.mark.parametrize("name", [OLD, NEW, "two_phase_commit/aborted@lock-order"])
async def test_the_patched_coordinator_replays_histories_from_before_and_after(name):
    result = await replayer().replay_workflow(recorded(name).history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


@pytest.mark.parametrize("name", [OLD, "two_phase_commit/aborted"])
async def test_the_patched_coordinator_replays_one_an_older_worker_ran_for_a_newer_saga(name):
    history = started_by_a_newer_saga(recorded(name))
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


@pytest.mark.parametrize("name", [OLD, "two_phase_commit/aborted"])
async def test_the_same_change_without_the_patch_breaks_running_coordinators(name):
    unpatched = Replayer(
        workflows=[LockOrderWithoutPatch],
        data_converter=DATA_CONVERTER,
        interceptors=INTERCEPTORS,
    )
    history = started_by_a_newer_saga(recorded(name))

    result = await unpatched.replay_workflow(history, raise_on_replay_failure=False)

    assert result.replay_failure is not None
    assert "Nondeterminism error" in str(result.replay_failure)
