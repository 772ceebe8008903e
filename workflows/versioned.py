"""The workflows as a versioned worker (a Worker Deployment version) registers them.

The server refuses a versioning behaviour from a worker that is not versioned,
so the behaviours live on these subclasses, registered only by versioned
workers; the code and the workflow names are the same.

- OrderSaga auto-upgrades: a saga can run for days, longer than a worker
  version lives, so it moves to the current version at its next workflow
  task; changes running sagas would see go behind workflow.patched.
- TwoPhaseCommit is pinned: a coordinator lives seconds and finishes on the
  code that began it, so its protocol never changes mid-transaction.
- ReturnSaga is pinned as well: a return lives seconds (or as long as the
  provider takes to answer its refund), and finishes on the code that began it.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio import workflow
from temporalio.common import VersioningBehavior

with workflow.unsafe.imports_passed_through():
    from domain.order_saga import SagaState
    from domain.orders import PlaceOrder
    from domain.returns import ReturnState, StartReturn
    from domain.two_phase import TwoPhaseInput, TwoPhaseOutcome

from workflows.order_saga import OrderSaga
from workflows.return_saga import ReturnSaga
from workflows.two_phase import TwoPhaseCommit


@workflow.defn(name="OrderSaga", versioning_behavior=VersioningBehavior.AUTO_UPGRADE)
class AutoUpgradingOrderSaga(OrderSaga):
    @workflow.run
    async def run(self, order: PlaceOrder) -> SagaState:
        return await super().run(order)


@workflow.defn(name="TwoPhaseCommit", versioning_behavior=VersioningBehavior.PINNED)
class PinnedTwoPhaseCommit(TwoPhaseCommit):
    @workflow.run
    async def run(self, tx: TwoPhaseInput) -> TwoPhaseOutcome:
        return await super().run(tx)


@workflow.defn(name="ReturnSaga", versioning_behavior=VersioningBehavior.PINNED)
class PinnedReturnSaga(ReturnSaga):
    @workflow.run
    async def run(self, request: StartReturn) -> ReturnState:
        return await super().run(request)


VERSIONED_WORKFLOWS: Sequence[type] = (
    AutoUpgradingOrderSaga,
    PinnedTwoPhaseCommit,
    PinnedReturnSaga,
)
