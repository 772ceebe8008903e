"""The fraud check was added to running sagas behind `workflow.patched`: proof both ways.

Histories recorded before the check replay on today's code along the old path;
histories recorded after it take the new one; and the same change made without
the patch cannot replay the old histories, which is what the patch is for.
"""

from __future__ import annotations

import pytest
from temporalio import workflow
from temporalio.worker import Replayer

from domain.order_saga import SagaState
from domain.orders import PlaceOrder
from temporal_client import DATA_CONVERTER, INTERCEPTORS, replayer
from tests.replay.histories import activities_of, patch_markers, recorded
from workflows.order_saga import FRAUD_CHECK, OrderSaga
from workflows.two_phase import TwoPhaseCommit


# Unsandboxed: the sandbox would re-import this test module, and with it the
# corpus loader's file access. Replay checks determinism all the same.
@workflow.defn(name="OrderSaga", sandboxed=False)
class FraudCheckWithoutPatch(OrderSaga):
    """The tempting version: the new step, unconditionally."""

    @workflow.run
    async def run(self, order: PlaceOrder) -> SagaState:
        return await super().run(order)

    def _fraud_check_applies(self) -> bool:
        return True


def test_old_histories_ran_without_the_check_and_new_ones_with_it():
    old, new = recorded("order_saga/confirmed"), recorded("order_saga/confirmed@fraud-check")

    assert "check_fraud" not in activities_of(old) and patch_markers(old) == []
    assert activities_of(new)[:3] == ["create_order", "check_fraud", "reserve_stock"]
    assert any(FRAUD_CHECK in marker for marker in patch_markers(new))


@pytest.mark.parametrize("name", ["order_saga/confirmed", "order_saga/confirmed@fraud-check"])
async def test_the_patched_saga_replays_histories_from_before_and_after(name):
    result = await replayer().replay_workflow(recorded(name).history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


@pytest.mark.parametrize(
    "name",
    ["order_saga/confirmed", "order_saga/payment_declined", "order_saga/two_phase_committed"],
)
async def test_the_same_change_without_the_patch_breaks_running_sagas(name):
    unpatched = Replayer(
        workflows=[FraudCheckWithoutPatch, TwoPhaseCommit],
        data_converter=DATA_CONVERTER,
        interceptors=INTERCEPTORS,
    )

    result = await unpatched.replay_workflow(recorded(name).history, raise_on_replay_failure=False)

    assert result.replay_failure is not None
    assert "Nondeterminism error" in str(result.replay_failure)
