"""Shielding the saga's own 2PC resolution from cancellation went in behind
`workflow.patched`: proof both ways, as for the fraud check.

Recorded before it, a cancel landing while the saga resolved a committed 2PC
without its coordinator cancelled the resolution and undid the order alone;
recorded after it, the resolution finishes and every committed effect is
undone. Both replay on today's code, and the shield without the patch cannot
replay the old history.
"""

from __future__ import annotations

import pytest
from temporalio import workflow
from temporalio.worker import Replayer

from domain.order_saga import SagaState
from domain.orders import PlaceOrder
from temporal_client import DATA_CONVERTER, INTERCEPTORS, replayer
from tests.replay.histories import activities_of, patch_markers, recorded
from workflows.order_saga import OrderSaga
from workflows.settlement import SHIELDED_RESOLUTION
from workflows.two_phase import TwoPhaseCommit

OLD = "order_saga/cancelled_while_resolving"
NEW = "order_saga/cancelled_while_resolving@shielded-resolution"


# Unsandboxed, as in test_fraud_check_patch: replay checks determinism all the same.
@workflow.defn(name="OrderSaga", sandboxed=False)
class ShieldWithoutPatch(OrderSaga):
    """The tempting version: the shield, unconditionally."""

    @workflow.run
    async def run(self, order: PlaceOrder) -> SagaState:
        return await super().run(order)

    def _shields_resolution(self) -> bool:
        return True


def test_old_sagas_undid_the_order_alone_and_new_ones_every_committed_effect():
    old, new = recorded(OLD), recorded(NEW)

    assert activities_of(old)[-2:] == ["resolve_transaction", "cancel_order"]
    assert not any(SHIELDED_RESOLUTION in marker for marker in patch_markers(old))
    assert activities_of(new)[-5:] == [
        "resolve_transaction",
        "refund_payment",
        "refund_store_credit",
        "release_stock",
        "cancel_order",
    ]
    assert any(SHIELDED_RESOLUTION in marker for marker in patch_markers(new))


@pytest.mark.parametrize("name", [OLD, NEW])
async def test_the_patched_saga_replays_histories_from_before_and_after(name):
    result = await replayer().replay_workflow(recorded(name).history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


async def test_the_shield_without_the_patch_breaks_running_sagas():
    unpatched = Replayer(
        workflows=[ShieldWithoutPatch, TwoPhaseCommit],
        data_converter=DATA_CONVERTER,
        interceptors=INTERCEPTORS,
    )

    result = await unpatched.replay_workflow(recorded(OLD).history, raise_on_replay_failure=False)

    assert result.replay_failure is not None
    assert "Nondeterminism error" in str(result.replay_failure)
