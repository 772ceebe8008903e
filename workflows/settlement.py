"""An order's two-phase settlement: who takes part, what each is asked, and
how the saga runs the coordinator (workflows.two_phase) as its child.

Stock and store credit are XA participants (PostgreSQL prepared transactions,
LOCAL steps); the card is a TCC participant (a hold at the provider, captured
or voided: REMOTE).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError, WorkflowAlreadyStartedError
from temporalio.workflow import ChildWorkflowCancellationType, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from domain.activities import PricedOrder, TwoPhaseAct
    from domain.orders import PlaceOrder
    from domain.saga import WORKFLOW_TASK_TIMEOUT, Runs
    from domain.two_phase import (
        ParticipantSpec,
        ResolveTransaction,
        TransactionResolved,
        TwoPhaseInput,
        TwoPhaseOutcome,
        coordinator_workflow_id,
    )
    from workflows.compensation import UNDO_RETRY, shielded
    from workflows.saga import Saga

STOCK, STORE_CREDIT, CARD = "stock", "store_credit", "card"
# Products are shared by every order, a wallet by its customer's orders; the
# card hold locks nothing shared (ParticipantSpec.lock_rank).
LOCK_RANKS = {STOCK: 0, STORE_CREDIT: 1}
# Added while sagas were running: before it, a cancel arriving while the saga
# resolved a 2PC without its coordinator cancelled that resolution, and the
# saga undid only what it had registered, leaving committed stock and credit
# (and a card the sweep would later capture) behind. Those replay as they ran.
SHIELDED_RESOLUTION = "shield-2pc-resolution"


async def settle_by_two_phase(
    saga: Saga[Any],
    tx_id: str,
    specs: list[ParticipantSpec],
    prepare_timeout_s: float,
    shields_resolution: Callable[[], bool],
) -> TwoPhaseOutcome:
    """The coordinator's outcome, or, if it failed or was terminated, the decision
    its log holds (abort if none)."""
    workflow.set_current_details(
        f"**settle_two_phase**: 2PC across {', '.join(p.name for p in specs)}"
    )
    # The coordinator outlives this saga (ABANDON): a decided transaction is
    # carried out even if the saga is terminated. A cancel of the saga waits
    # for the decision, then undoes a commit like any other step.
    child = workflow.execute_child_workflow(
        "TwoPhaseCommit",
        TwoPhaseInput(tx_id=tx_id, participants=specs, prepare_timeout_s=prepare_timeout_s),
        id=coordinator_workflow_id(tx_id),
        result_type=TwoPhaseOutcome,
        parent_close_policy=ParentClosePolicy.ABANDON,
        task_timeout=WORKFLOW_TASK_TIMEOUT,
        cancellation_type=ChildWorkflowCancellationType.ABANDON,
        static_summary=f"2PC for order {tx_id}",
    )
    try:
        outcome: TwoPhaseOutcome = await shielded(child, "settling by two-phase commit")
        return outcome
    except (ChildWorkflowError, WorkflowAlreadyStartedError) as err:
        resolving = _resolve_without_coordinator(saga, tx_id, specs, err)
        if shields_resolution():
            # Like the wait for the coordinator: only a known decision tells
            # what there is to undo, so a cancel waits for it.
            return await shielded(resolving, "resolving the 2PC its coordinator left")
        return await resolving


async def _resolve_without_coordinator(
    saga: Saga[Any], tx_id: str, specs: list[ParticipantSpec], err: Exception
) -> TwoPhaseOutcome:
    workflow.logger.warning("2PC coordinator for %s gone (%s); resolving", tx_id, err)
    resolved = await saga.call(
        TwoPhaseAct.RESOLVE_TRANSACTION,
        ResolveTransaction(tx_id=tx_id, participants=[p.name for p in specs]),
        TransactionResolved,
        "Resolve the 2PC its coordinator left",
        # It may void or capture a card hold at the provider.
        runs=Runs.REMOTE,
        retry=UNDO_RETRY,
    )
    return TwoPhaseOutcome(
        tx_id=tx_id,
        decision=resolved.decision,
        reasons={"coordinator": f"coordinator gone: {err}"},
        phase="done",
        acknowledged=[p.name for p in specs],
    )


def participants_for(order: PlaceOrder, priced: PricedOrder) -> list[ParticipantSpec]:
    lines: dict[str, int] = {}
    for line in order.items:
        lines[line.sku] = lines.get(line.sku, 0) + line.quantity
    specs = [
        ParticipantSpec(
            name=STOCK,
            kind="xa",
            prepare=TwoPhaseAct.PREPARE_STOCK,
            commit=TwoPhaseAct.COMMIT_STOCK,
            abort=TwoPhaseAct.ABORT_STOCK,
            payload={"order_id": order.order_id, "lines": lines},
            lock_rank=LOCK_RANKS[STOCK],
            runs=Runs.LOCAL,
        )
    ]
    if order.store_credit > 0:
        specs.append(
            ParticipantSpec(
                name=STORE_CREDIT,
                kind="xa",
                prepare=TwoPhaseAct.PREPARE_STORE_CREDIT,
                commit=TwoPhaseAct.COMMIT_STORE_CREDIT,
                abort=TwoPhaseAct.ABORT_STORE_CREDIT,
                payload={
                    "order_id": order.order_id,
                    "customer_id": order.customer_id,
                    "amount": order.store_credit,
                },
                lock_rank=LOCK_RANKS[STORE_CREDIT],
                runs=Runs.LOCAL,
            )
        )
    card_amount = priced.total - order.store_credit
    if card_amount > 0:
        specs.append(
            ParticipantSpec(
                name=CARD,
                kind="tcc",
                prepare=TwoPhaseAct.TRY_CARD_HOLD,
                commit=TwoPhaseAct.CONFIRM_CARD_HOLD,
                abort=TwoPhaseAct.CANCEL_CARD_HOLD,
                payload={
                    "order_id": order.order_id,
                    "customer_id": order.customer_id,
                    "amount": card_amount,
                    "currency": priced.currency,
                    "payment_token": order.payment_token,
                },
            )
        )
    return specs
