"""The return saga: take back part of a CONFIRMED order and refund it, written with
the saga kit (workflows.saga) alone.

Steps, the undo each registers, and where each runs:
  1. open_return          — cancel_return           local (orders)
  2. receive_return       — reject_return_receipt   local (shipping)
  3. restock_return       — unstock_return          local (inventory)
  4. refund_return_card   — none: the pivot         remote (payments, the provider)
  5. credit_return_wallet — none                    past the pivot (payments)
  6. close_return         — none                    past the pivot (orders)

The card refund is the point of no return: money given back cannot be taken
back, so from its start a cancel is refused and nothing after it is undone.
It ends refunded or refused, never given up on (activities.provider_retry
`final`); a refusal undoes steps 3, 2, 1 in that order and fails the saga
with the refusal's type. Crediting the wallet and closing the return cannot
be refused, only delayed: they retry until done.

A return that asks for more than is left of the order (counting earlier
returns not cancelled) is refused by open_return, and nothing is written.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.bulkheads import queue_for
    from domain.returns import (
        CloseReturn,
        CreditReturnWallet,
        GoodsMoved,
        GoodsReturn,
        OpenReturn,
        RefundReturnCard,
        ReturnAct,
        ReturnCardRefunded,
        ReturnClosed,
        ReturnOpened,
        ReturnState,
        ReturnStatus,
        ReturnStep,
        ReturnWalletCredited,
        StartReturn,
    )
    from domain.saga import Runs
    from workflows.saga import Saga
    from workflows.steps import Step, UndoStep

OPEN = Step(
    ReturnStep.OPEN,
    ReturnAct.OPEN_RETURN,
    ReturnOpened,
    UndoStep(ReturnAct.CANCEL_RETURN, ReturnClosed, CloseReturn),
)
RECEIVE = Step(
    ReturnStep.RECEIVE,
    ReturnAct.RECEIVE_RETURN,
    GoodsMoved,
    UndoStep(ReturnAct.REJECT_RETURN_RECEIPT, GoodsMoved, GoodsReturn),
)
RESTOCK = Step(
    ReturnStep.RESTOCK,
    ReturnAct.RESTOCK_RETURN,
    GoodsMoved,
    UndoStep(ReturnAct.UNSTOCK_RETURN, GoodsMoved, GoodsReturn),
)
REFUND_CARD = Step(
    ReturnStep.REFUND_CARD, ReturnAct.REFUND_RETURN_CARD, ReturnCardRefunded, runs=Runs.REMOTE
)
CREDIT_WALLET = Step(ReturnStep.CREDIT_WALLET, ReturnAct.CREDIT_RETURN_WALLET, ReturnWalletCredited)
CLOSE = Step(ReturnStep.CLOSE, ReturnAct.CLOSE_RETURN, ReturnClosed)


@workflow.defn(name="ReturnSaga")
class ReturnSaga(Saga[ReturnState]):
    steps = (OPEN, RECEIVE, RESTOCK, REFUND_CARD, CREDIT_WALLET, CLOSE)
    cancelled_type = "ReturnCancelled"

    @workflow.init
    def __init__(self, request: StartReturn) -> None:
        super().__init__(ReturnState(return_id=request.return_id, order_id=request.order_id))
        self._request = request

    @workflow.run
    async def run(self, request: StartReturn) -> ReturnState:
        return await self.execute(self.forward(request))

    async def forward(self, request: StartReturn) -> None:
        lines, units = request.lines, sum(line.quantity for line in request.lines)
        opened: ReturnOpened = await self.do(
            OPEN,
            OpenReturn(
                **self.keys(ReturnStep.OPEN),
                customer_id=request.customer_id,
                lines=lines,
                request_hash=request.request_hash,
            ),
            f"Open a return of {units} unit(s)",
        )
        state = self.state()
        state.value = opened.value
        goods = GoodsReturn(**self.keys(ReturnStep.RECEIVE), lines=lines)
        await self.do(RECEIVE, goods, f"Receive {units} unit(s)")
        goods = GoodsReturn(**self.keys(ReturnStep.RESTOCK), lines=lines)
        await self.do(RESTOCK, goods, f"Restock {units} unit(s)")
        refund = RefundReturnCard(
            **self.keys(ReturnStep.REFUND_CARD),
            customer_id=request.customer_id,
            value=opened.value,
            order_total=opened.order_total,
        )
        refunded: ReturnCardRefunded = await self.final_step(
            REFUND_CARD, refund, f"Refund the card's share of {opened.value} {opened.currency}"
        )
        state.card_refunded = refunded.card_amount
        credit = CreditReturnWallet(
            **self.keys(ReturnStep.CREDIT_WALLET),
            customer_id=request.customer_id,
            amount=refunded.store_credit_due,
        )
        credited: ReturnWalletCredited = await self.final_step(
            CREDIT_WALLET, credit, f"Credit {refunded.store_credit_due} to the wallet"
        )
        state.store_credit_refunded = credited.amount
        await self._close()

    async def _close(self) -> None:
        state = self.state()
        command = CloseReturn(
            **self.keys(ReturnStep.CLOSE),
            steps=[*self.completed, ReturnStep.CLOSE],
            card_refunded=state.card_refunded,
            store_credit_refunded=state.store_credit_refunded,
        )
        closed: ReturnClosed = await self.final_step(CLOSE, command, "Close the return")
        if closed.status != ReturnStatus.CLOSED:
            # Only a reset replaying a return already ended gets here: say so.
            workflow.logger.warning("return %s was already %s", state.return_id, closed.status)
        self.confirmed()

    def undo_fields(self, step: Step) -> dict[str, Any]:
        """What cancel_return records: the saga's account of what happened."""
        if step is not OPEN:
            return {}
        return {
            "steps": self.completed,
            "compensations": [*self.compensated, ReturnAct.CANCEL_RETURN],
            "failure_reason": self.state().failure_reason,
        }

    # -- the kit's hooks -------------------------------------------------------

    def describe(self) -> str:
        return f"return {self._request.return_id} of order {self._request.order_id}"

    def command_fields(self) -> dict[str, Any]:
        return {"order_id": self._request.order_id, "return_id": self._request.return_id}

    def queue_for(self, action: str) -> str:
        return queue_for(action, workflow.info().task_queue)
