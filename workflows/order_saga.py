"""The order saga.

Steps, and the undo each registers:
  1. create_order     — cancel_order
  2. reserve_stock    — release_stock
  3. charge_payment   — refund_payment
  4. create_shipment  — cancel_shipment
  5. confirm_order    — none: the point of no return, shielded from cancellation

A business refusal (unknown product, out of stock, card declined) or a step that
runs out of retries undoes what was done in reverse order and fails the
workflow with the refusal's type. Cancellation (the `cancel` update, or a
Temporal cancel request) undoes the same way until confirm_order begins; after
that it is refused.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from domain.activities import (
        Act,
        CancelShipment,
        ChargePayment,
        CloseOrder,
        CreateOrder,
        CreateShipment,
        OrderClosed,
        PaymentCharged,
        PaymentRefunded,
        PricedOrder,
        RefundPayment,
        ReleaseStock,
        ReserveStock,
        ShipmentCancelled,
        ShipmentCreated,
        StockReleased,
        StockReserved,
    )
    from domain.errors import NON_RETRYABLE_ERROR_TYPES, ErrorType
    from domain.orders import OrderStatus, PlaceOrder
    from domain.saga import CancelAccepted, CancelRequest, SagaState, StepName
    from domain.search_attributes import CUSTOMER_ID, ORDER_STATUS, ORDER_TOTAL
    from workflows.compensation import UNDO_RETRY, Compensations, refusal_type

R = TypeVar("R", bound=BaseModel)

STEP_TIMEOUT = timedelta(seconds=30)
# Transient faults: exponential backoff, bounded so a dead dependency ends in
# compensation within minutes instead of holding stock forever.
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=20),
    maximum_attempts=10,
    non_retryable_error_types=list(NON_RETRYABLE_ERROR_TYPES),
)


@workflow.defn(name="OrderSaga")
class OrderSaga:
    def __init__(self) -> None:
        self._state: SagaState | None = None
        self._saga = Compensations(
            on_progress=self._progress, cancel_requested=self._cancel_requested
        )
        self._steps: asyncio.Task[None] | None = None
        self._cancel_reason: str | None = None
        self._past_no_return = False

    @workflow.run
    async def run(self, order: PlaceOrder) -> SagaState:
        self._state = SagaState(order_id=order.order_id, customer_id=order.customer_id)
        workflow.upsert_search_attributes(
            [ORDER_STATUS.value_set(OrderStatus.PENDING), CUSTOMER_ID.value_set(order.customer_id)]
        )
        self._steps = asyncio.create_task(self._forward(order))
        try:
            await self._steps
        except (ActivityError, asyncio.CancelledError) as err:
            # Only step failures and cancellation compensate. A bug in this code
            # fails the workflow task instead, so a fixed worker can resume it.
            await self._undo(order, self._reason_for(err))
            await workflow.wait_condition(workflow.all_handlers_finished)
            if isinstance(err, asyncio.CancelledError) and self._cancel_reason is None:
                raise  # a Temporal cancel request: end as Canceled
            raise ApplicationError(
                f"order {order.order_id} cancelled: {self._state.failure_reason}",
                type=refusal_type(err)
                or ("OrderCancelled" if self._cancel_reason else "StepFailed"),
                non_retryable=True,
            ) from err
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    @workflow.query(name="state")
    def state(self) -> SagaState:
        assert self._state is not None
        return self._state

    @workflow.update(name="cancel")
    async def cancel(self, request: CancelRequest) -> CancelAccepted:
        self._cancel_reason = request.reason
        if self._steps is not None:
            self._steps.cancel()
        return CancelAccepted(order_id=self.state().order_id)

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        state = self.state()
        if state.status != OrderStatus.PENDING or self._past_no_return:
            raise ApplicationError(
                f"order {state.order_id} can no longer be cancelled ({state.status})",
                type=ErrorType.ORDER_NOT_CANCELLABLE,
            )
        if state.compensating or self._cancel_reason is not None:
            raise ApplicationError(
                f"order {state.order_id} is already being cancelled",
                type=ErrorType.ORDER_NOT_CANCELLABLE,
            )

    async def _forward(self, order: PlaceOrder) -> None:
        state = self.state()
        priced = await self._saga.step(
            StepName.CREATE_ORDER,
            lambda: self._call(
                Act.CREATE_ORDER,
                CreateOrder(
                    **self._keys(StepName.CREATE_ORDER, order.order_id),
                    customer_id=order.customer_id,
                    items=order.items,
                    request_hash=order.request_hash,
                ),
                PricedOrder,
                f"Create order with {len(order.items)} line(s)",
            ),
            undo=(Act.CANCEL_ORDER, lambda: self._cancel_order(order)),
        )
        state.items, state.total, state.currency = priced.items, priced.total, priced.currency
        workflow.upsert_search_attributes([ORDER_TOTAL.value_set(priced.total)])
        units = sum(line.quantity for line in order.items)
        await self._saga.step(
            StepName.RESERVE_STOCK,
            lambda: self._call(
                Act.RESERVE_STOCK,
                ReserveStock(
                    **self._keys(StepName.RESERVE_STOCK, order.order_id),
                    items=order.items,
                ),
                StockReserved,
                f"Reserve {units} unit(s)",
            ),
            undo=(
                Act.RELEASE_STOCK,
                lambda: self._undo_call(
                    Act.RELEASE_STOCK,
                    ReleaseStock,
                    StockReleased,
                    order.order_id,
                    "Release reserved stock",
                ),
            ),
        )
        await self._saga.step(
            StepName.CHARGE_PAYMENT,
            lambda: self._call(
                Act.CHARGE_PAYMENT,
                ChargePayment(
                    **self._keys(StepName.CHARGE_PAYMENT, order.order_id),
                    customer_id=order.customer_id,
                    amount=priced.total,
                    currency=priced.currency,
                    payment_token=order.payment_token,
                ),
                PaymentCharged,
                f"Charge {priced.total} {priced.currency}",
            ),
            undo=(
                Act.REFUND_PAYMENT,
                lambda: self._undo_call(
                    Act.REFUND_PAYMENT,
                    RefundPayment,
                    PaymentRefunded,
                    order.order_id,
                    "Refund payment",
                ),
            ),
        )
        await self._saga.step(
            StepName.CREATE_SHIPMENT,
            lambda: self._call(
                Act.CREATE_SHIPMENT,
                CreateShipment(
                    **self._keys(StepName.CREATE_SHIPMENT, order.order_id),
                    customer_id=order.customer_id,
                    items=order.items,
                ),
                ShipmentCreated,
                "Create shipment",
            ),
            undo=(
                Act.CANCEL_SHIPMENT,
                lambda: self._undo_call(
                    Act.CANCEL_SHIPMENT,
                    CancelShipment,
                    ShipmentCancelled,
                    order.order_id,
                    "Cancel shipment",
                ),
            ),
        )
        await self._confirm(order)

    async def _confirm(self, order: PlaceOrder) -> None:
        # Past this point the customer is told "confirmed": a cancellation
        # arriving now must neither interrupt the step nor undo the others.
        self._past_no_return = True
        state = self.state()
        command = CloseOrder(
            **self._keys(StepName.CONFIRM_ORDER, order.order_id),
            steps=[*self._saga.completed, StepName.CONFIRM_ORDER],
        )
        confirm = asyncio.create_task(
            self._saga.step(
                StepName.CONFIRM_ORDER,
                lambda: self._call(
                    Act.CONFIRM_ORDER, command, OrderClosed, "Confirm order", retry=UNDO_RETRY
                ),
            )
        )
        while not confirm.done():
            try:
                await workflow.wait([confirm])
            except asyncio.CancelledError:
                workflow.logger.info("cancellation ignored: order %s is confirming", order.order_id)
        confirm.result()
        state.status = OrderStatus.CONFIRMED
        state.current_step = None
        workflow.upsert_search_attributes([ORDER_STATUS.value_set(OrderStatus.CONFIRMED)])
        workflow.set_current_details(f"Order {order.order_id} confirmed")

    async def _undo(self, order: PlaceOrder, reason: str) -> None:
        state = self.state()
        state.compensating, state.failure_reason = True, reason
        workflow.upsert_search_attributes([ORDER_STATUS.value_set("COMPENSATING")])
        workflow.set_current_details(
            f"Compensating: {reason}\n\nUndoing: {', '.join(self._saga.pending_undos)}"
        )
        await self._saga.compensate()
        state.status, state.compensating, state.current_step = OrderStatus.CANCELLED, False, None
        workflow.upsert_search_attributes([ORDER_STATUS.value_set(OrderStatus.CANCELLED)])
        workflow.set_current_details(f"Order {order.order_id} cancelled: {reason}")

    async def _cancel_order(self, order: PlaceOrder) -> OrderClosed:
        command = CloseOrder(
            **self._keys(Act.CANCEL_ORDER, order.order_id),
            steps=list(self._saga.completed),
            compensations=[*self._saga.compensated, Act.CANCEL_ORDER],
            failure_reason=self.state().failure_reason,
        )
        return await self._call(
            Act.CANCEL_ORDER, command, OrderClosed, "Cancel order", retry=UNDO_RETRY
        )

    async def _undo_call(
        self, activity: str, model: type[BaseModel], result: type[R], order_id: str, summary: str
    ) -> R:
        command = model(**self._keys(activity, order_id))
        return await self._call(activity, command, result, summary, retry=UNDO_RETRY)

    async def _call(
        self,
        activity: str,
        arg: BaseModel,
        result: type[R],
        summary: str,
        retry: RetryPolicy = STEP_RETRY,
    ) -> R:
        self.state().current_step = activity
        workflow.set_current_details(f"**{activity}**: {summary}")
        outcome: R = await workflow.execute_activity(
            activity,
            arg,
            result_type=result,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=retry,
            summary=summary,
            # Wait for a cancelled attempt to finish: undoing a step whose
            # transaction is still in flight would leave its effect behind.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        return outcome

    def _keys(self, step: str, order_id: str) -> dict[str, Any]:
        workflow_id = workflow.info().workflow_id
        return {
            "idempotency_key": f"{workflow_id}:{step}",
            "order_id": order_id,
            "correlation_id": workflow_id,
        }

    def _cancel_requested(self) -> bool:
        if self._past_no_return:
            return False
        return self._cancel_reason is not None or workflow.cancellation_reason() is not None

    def _progress(self) -> None:
        state = self.state()
        state.steps = list(self._saga.completed)
        state.compensations = list(self._saga.compensated)

    def _reason_for(self, err: ActivityError | asyncio.CancelledError) -> str:
        # A cancel update wins over what the interrupted step then reported.
        if self._cancel_reason is not None:
            return self._cancel_reason
        if isinstance(err, asyncio.CancelledError):
            return "workflow cancelled"
        cause = err.cause
        if isinstance(cause, ApplicationError):
            return cause.message
        return f"{err.activity_type} failed: {cause or err}"
