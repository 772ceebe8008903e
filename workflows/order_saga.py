"""The order saga.

Steps, and the undo each registers:
  1. create_order       — cancel_order
  1'. check_fraud       — none (read-only); sagas started before it existed skip
                          it (workflow.patched, see FRAUD_CHECK)
  2. reserve_stock      — release_stock          } card-only orders: saga steps
  3. charge_payment     — refund_payment         }
  2'. settle_two_phase  — refund_payment, refund_store_credit, release_stock
                          } orders using store credit: one 2PC across stock,
                          } wallet and card (child workflow TwoPhaseCommit)
  4. create_shipment    — cancel_shipment
  5. confirm_order      — none: the point of no return, shielded from cancellation

A business refusal (unknown product, out of stock, card declined, a 2PC that
aborted) or a step that runs out of retries undoes what was done in reverse
order and fails the workflow with the refusal's type. Cancellation (the
`cancel` update, or a Temporal cancel request) undoes the same way until
confirm_order begins; after that it is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    WorkflowAlreadyStartedError,
    is_cancelled_exception,
)
from temporalio.workflow import (
    ActivityCancellationType,
    ChildWorkflowCancellationType,
    ParentClosePolicy,
)

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from domain.activities import (
        Act,
        CancelShipment,
        ChargePayment,
        CheckFraud,
        CloseOrder,
        CreateOrder,
        CreateShipment,
        FraudCleared,
        OrderClosed,
        PaymentCharged,
        PaymentRefunded,
        PricedOrder,
        RefundPayment,
        RefundStoreCredit,
        ReleaseStock,
        ReserveStock,
        ShipmentCancelled,
        ShipmentCreated,
        StockReleased,
        StockReserved,
        StoreCreditRefunded,
        TwoPhaseAct,
    )
    from domain.bulkheads import queue_for
    from domain.errors import NON_RETRYABLE_ERROR_TYPES, ErrorType
    from domain.orders import OrderStatus, PlaceOrder
    from domain.saga import CancelAccepted, CancelRequest, SagaState, StepName, TwoPhaseView
    from domain.search_attributes import CUSTOMER_ID, ORDER_STATUS, ORDER_TOTAL
    from domain.two_phase import (
        Decision,
        ParticipantSpec,
        ResolveTransaction,
        TransactionResolved,
        TwoPhaseInput,
        TwoPhaseOutcome,
        coordinator_workflow_id,
    )
    from workflows.compensation import UNDO_RETRY, Compensations, refusal_type, shielded
    from workflows.metrics import count
    from workflows.settlement import CARD, STORE_CREDIT, participants_for

R = TypeVar("R", bound=BaseModel)
Undo = tuple[str, Callable[[], Awaitable[Any]]]

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
# Steps that call the payment provider pace their own retries (jittered, after
# Retry-After or an open breaker) and give up at their own deadline, set on the
# worker; this policy only lets them, and the backstop bounds a misconfiguration.
PROVIDER_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=0,
    non_retryable_error_types=list(NON_RETRYABLE_ERROR_TYPES),
)
PROVIDER_BACKSTOP = timedelta(minutes=15)
# Added while sagas were running: those replay without the check (their
# histories have no marker), new ones record the marker and take it. Once no
# saga started before it can still be running, this becomes
# workflow.deprecate_patched(FRAUD_CHECK); a release later the branch goes.
FRAUD_CHECK = "fraud-check-before-payment"
# Added while sagas were running: before it, a cancel arriving while the saga
# resolved a 2PC without its coordinator cancelled that resolution, and the
# saga undid only what it had registered, leaving committed stock and credit
# (and a card the sweep would later capture) behind. Those replay as they ran.
SHIELDED_RESOLUTION = "shield-2pc-resolution"


@workflow.defn(name="OrderSaga")
class OrderSaga:
    @workflow.init
    def __init__(self, order: PlaceOrder) -> None:
        # Built before any handler runs: a cancel update can arrive in the
        # very first workflow task, before run() has started.
        self._state = SagaState(order_id=order.order_id, customer_id=order.customer_id)
        self._saga = Compensations(
            on_progress=self._progress, cancel_requested=self._cancel_requested
        )
        self._steps: asyncio.Task[None] | None = None
        self._cancel_reason: str | None = None
        self._past_no_return = False

    @workflow.run
    async def run(self, order: PlaceOrder) -> SagaState:
        workflow.upsert_search_attributes(
            [ORDER_STATUS.value_set(OrderStatus.PENDING), CUSTOMER_ID.value_set(order.customer_id)]
        )
        settlement = "two_phase" if order.settles_atomically else "saga"
        count("saga_started", "Order sagas started", settlement=settlement)
        self._steps = asyncio.create_task(self._forward(order))
        try:
            await self._steps
        except (ActivityError, ApplicationError, asyncio.CancelledError) as err:
            # Only step failures, refusals and cancellation compensate. A bug in
            # this code fails the workflow task instead, so a fixed worker can
            # resume it.
            await self._undo(order, self._reason_for(err))
            outcome = (
                "cancelled" if self._cancel_reason or self._temporal_cancel(err) else "refused"
            )
            count(
                "saga_compensated",
                "Order sagas that ended undone",
                reason=refusal_type(err) or outcome,
            )
            await workflow.wait_condition(workflow.all_handlers_finished)
            if self._cancel_reason is None and self._temporal_cancel(err):
                raise asyncio.CancelledError("workflow cancelled") from err  # ends Canceled
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
        return self._state

    @workflow.update(name="cancel")
    async def cancel(self, request: CancelRequest) -> CancelAccepted:
        # A repeated cancel is accepted and changes nothing.
        if self._cancel_reason is None and not self._state.compensating:
            self._cancel_reason = request.reason
            if self._steps is not None:
                self._steps.cancel()
        return CancelAccepted(order_id=self._state.order_id)

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        state = self.state()
        if state.status != OrderStatus.PENDING or self._past_no_return:
            raise ApplicationError(
                f"order {state.order_id} can no longer be cancelled ({state.status})",
                type=ErrorType.ORDER_NOT_CANCELLABLE,
            )

    async def _forward(self, order: PlaceOrder) -> None:
        priced = await self._create_order(order)
        if self._fraud_check_applies():
            await self._check_fraud(order, priced)
        if order.settles_atomically:
            await self._settle_two_phase(order, priced)
        else:
            await self._reserve_stock(order)
            await self._charge_payment(order, priced)
        await self._create_shipment(order)
        await self._confirm(order)

    async def _create_order(self, order: PlaceOrder) -> PricedOrder:
        command = CreateOrder(
            **self._keys(StepName.CREATE_ORDER, order.order_id),
            customer_id=order.customer_id,
            items=order.items,
            request_hash=order.request_hash,
        )
        summary = f"Create order with {len(order.items)} line(s)"
        priced = await self._saga.step(
            StepName.CREATE_ORDER,
            lambda: self._call(Act.CREATE_ORDER, command, PricedOrder, summary),
            undo=(Act.CANCEL_ORDER, lambda: self._cancel_order(order)),
        )
        state = self.state()
        state.items, state.total, state.currency = priced.items, priced.total, priced.currency
        workflow.upsert_search_attributes([ORDER_TOTAL.value_set(priced.total)])
        return priced

    def _fraud_check_applies(self) -> bool:
        return workflow.patched(FRAUD_CHECK)

    async def _check_fraud(self, order: PlaceOrder, priced: PricedOrder) -> None:
        command = CheckFraud(
            **self._keys(StepName.CHECK_FRAUD, order.order_id),
            customer_id=order.customer_id,
            total=priced.total,
            currency=priced.currency,
        )
        await self._saga.step(
            StepName.CHECK_FRAUD,
            lambda: self._call(Act.CHECK_FRAUD, command, FraudCleared, "Check for fraud"),
        )

    async def _reserve_stock(self, order: PlaceOrder) -> None:
        command = ReserveStock(
            **self._keys(StepName.RESERVE_STOCK, order.order_id), items=order.items
        )
        summary = f"Reserve {sum(line.quantity for line in order.items)} unit(s)"
        await self._saga.step(
            StepName.RESERVE_STOCK,
            lambda: self._call(Act.RESERVE_STOCK, command, StockReserved, summary),
            undo=self._release_stock(order),
        )

    async def _charge_payment(self, order: PlaceOrder, priced: PricedOrder) -> None:
        command = ChargePayment(
            **self._keys(StepName.CHARGE_PAYMENT, order.order_id),
            customer_id=order.customer_id,
            amount=priced.total,
            currency=priced.currency,
            payment_token=order.payment_token,
        )
        summary = f"Charge {priced.total} {priced.currency}"
        await self._saga.step(
            StepName.CHARGE_PAYMENT,
            lambda: self._call(
                Act.CHARGE_PAYMENT,
                command,
                PaymentCharged,
                summary,
                retry=PROVIDER_RETRY,
                deadline=PROVIDER_BACKSTOP,
            ),
            undo=self._refund_payment(order),
        )

    async def _settle_two_phase(self, order: PlaceOrder, priced: PricedOrder) -> None:
        """Stock, store credit and card change together or not at all."""
        if not 0 <= order.store_credit <= priced.total:
            raise ApplicationError(
                f"store credit {order.store_credit} exceeds the total {priced.total}",
                type=ErrorType.INVALID_ORDER,
                non_retryable=True,
            )
        specs = participants_for(order, priced)
        state = self.state()
        state.two_phase = TwoPhaseView(tx_id=order.order_id)
        state.current_step = StepName.SETTLE_TWO_PHASE
        workflow.set_current_details(
            f"**{StepName.SETTLE_TWO_PHASE}**: 2PC across {', '.join(p.name for p in specs)}"
        )
        # The coordinator outlives this saga (ABANDON): a decided transaction is
        # carried out even if the saga is terminated. A cancel of the saga waits
        # for the decision, then undoes a commit like any other step.
        child = workflow.execute_child_workflow(
            "TwoPhaseCommit",
            TwoPhaseInput(
                tx_id=order.order_id, participants=specs, prepare_timeout_s=order.prepare_timeout_s
            ),
            id=coordinator_workflow_id(order.order_id),
            result_type=TwoPhaseOutcome,
            parent_close_policy=ParentClosePolicy.ABANDON,
            cancellation_type=ChildWorkflowCancellationType.ABANDON,
            static_summary=f"2PC for order {order.order_id}",
        )
        try:
            outcome: TwoPhaseOutcome = await shielded(child, "settling by two-phase commit")
        except (ChildWorkflowError, WorkflowAlreadyStartedError) as err:
            resolving = self._resolve_without_coordinator(order, specs, err)
            if self._shields_resolution():
                # Like the wait for the coordinator: only a known decision tells
                # what there is to undo, so a cancel waits for it.
                outcome = await shielded(resolving, "resolving the 2PC its coordinator left")
            else:
                outcome = await resolving
        state.two_phase = TwoPhaseView.of(outcome)
        if outcome.decision is not Decision.COMMIT:
            refusal = next(iter(outcome.refusals.values()), "TwoPhaseAborted")
            reason = "; ".join(f"{k}: {v}" for k, v in outcome.reasons.items()) or "aborted"
            raise ApplicationError(reason, type=refusal, non_retryable=True)
        # Committed, but shipping may still fail: each effect gets its undo.
        self._saga.register(*self._release_stock(order))
        names = {p.name for p in specs}
        if STORE_CREDIT in names:
            self._saga.register(*self._refund_store_credit(order))
        if CARD in names:
            self._saga.register(*self._refund_payment(order))
        await self._saga.step(StepName.SETTLE_TWO_PHASE, _already_done)

    def _shields_resolution(self) -> bool:
        return workflow.patched(SHIELDED_RESOLUTION)

    async def _resolve_without_coordinator(
        self, order: PlaceOrder, specs: list[ParticipantSpec], err: Exception
    ) -> TwoPhaseOutcome:
        """The coordinator failed or was terminated: settle from its log, or abort."""
        workflow.logger.warning("2PC coordinator for %s gone (%s); resolving", order.order_id, err)
        resolved: TransactionResolved = await self._call(
            TwoPhaseAct.RESOLVE_TRANSACTION,
            ResolveTransaction(tx_id=order.order_id, participants=[p.name for p in specs]),
            TransactionResolved,
            "Resolve the 2PC its coordinator left",
            retry=UNDO_RETRY,
        )
        return TwoPhaseOutcome(
            tx_id=order.order_id,
            decision=resolved.decision,
            reasons={"coordinator": f"coordinator gone: {err}"},
            phase="done",
            acknowledged=[p.name for p in specs],
        )

    async def _create_shipment(self, order: PlaceOrder) -> None:
        command = CreateShipment(
            **self._keys(StepName.CREATE_SHIPMENT, order.order_id),
            customer_id=order.customer_id,
            items=order.items,
        )
        await self._saga.step(
            StepName.CREATE_SHIPMENT,
            lambda: self._call(Act.CREATE_SHIPMENT, command, ShipmentCreated, "Create shipment"),
            undo=self._undo_of(
                Act.CANCEL_SHIPMENT,
                CancelShipment,
                ShipmentCancelled,
                order,
                StepName.CREATE_SHIPMENT,
            ),
        )

    async def _confirm(self, order: PlaceOrder) -> None:
        # Past this point the customer is told "confirmed": a cancellation
        # arriving now must neither interrupt the step nor undo the others.
        self._past_no_return = True
        command = CloseOrder(
            **self._keys(StepName.CONFIRM_ORDER, order.order_id),
            steps=[*self._saga.completed, StepName.CONFIRM_ORDER],
        )
        closed: OrderClosed = await shielded(
            self._saga.step(
                StepName.CONFIRM_ORDER,
                lambda: self._call(
                    Act.CONFIRM_ORDER, command, OrderClosed, "Confirm order", retry=UNDO_RETRY
                ),
            ),
            f"confirming order {order.order_id}",
        )
        if closed.status != OrderStatus.CONFIRMED:
            # e.g. a reset replayed the steps of an order already cancelled.
            raise ApplicationError(
                f"order {order.order_id} could not be confirmed: it is {closed.status}",
                type=ErrorType.ORDER_CLOSED,
                non_retryable=True,
            )
        state = self.state()
        state.status, state.current_step = OrderStatus.CONFIRMED, None
        count("saga_confirmed", "Order sagas that ended confirmed")
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
            fences=self._key(StepName.CREATE_ORDER),
            steps=list(self._saga.completed),
            compensations=[*self._saga.compensated, Act.CANCEL_ORDER],
            failure_reason=self.state().failure_reason,
            customer_id=order.customer_id,
            request_hash=order.request_hash,
        )
        return await self._call(
            Act.CANCEL_ORDER, command, OrderClosed, "Cancel order", retry=UNDO_RETRY
        )

    def _release_stock(self, order: PlaceOrder) -> Undo:
        return self._undo_of(
            Act.RELEASE_STOCK, ReleaseStock, StockReleased, order, StepName.RESERVE_STOCK
        )

    def _refund_payment(self, order: PlaceOrder) -> Undo:
        return self._undo_of(
            Act.REFUND_PAYMENT, RefundPayment, PaymentRefunded, order, StepName.CHARGE_PAYMENT
        )

    def _refund_store_credit(self, order: PlaceOrder) -> Undo:
        return self._undo_of(
            TwoPhaseAct.REFUND_STORE_CREDIT,
            RefundStoreCredit,
            StoreCreditRefunded,
            order,
            StepName.SETTLE_TWO_PHASE,
        )

    def _undo_of(
        self,
        activity: str,
        model: type[BaseModel],
        result: type[BaseModel],
        order: PlaceOrder,
        undoes: str,
    ) -> Undo:
        def undo() -> Awaitable[Any]:
            command = model(**self._keys(activity, order.order_id), fences=self._key(undoes))
            summary = f"Undo {undoes}: {activity}"
            return self._call(activity, command, result, summary, retry=UNDO_RETRY)

        return activity, undo

    async def _call(
        self,
        activity: str,
        arg: BaseModel,
        result: type[R],
        summary: str,
        retry: RetryPolicy = STEP_RETRY,
        deadline: timedelta | None = None,
    ) -> R:
        self.state().current_step = activity
        workflow.set_current_details(f"**{activity}**: {summary}")
        outcome: R = await workflow.execute_activity(
            activity,
            arg,
            result_type=result,
            task_queue=queue_for(activity, workflow.info().task_queue),
            start_to_close_timeout=STEP_TIMEOUT,
            schedule_to_close_timeout=deadline,
            retry_policy=retry,
            summary=summary,
            # Wait for a cancelled attempt to finish: undoing a step whose
            # transaction is still in flight would leave its effect behind.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        return outcome

    def _key(self, step: str) -> str:
        return f"{workflow.info().workflow_id}:{step}"

    def _keys(self, step: str, order_id: str) -> dict[str, Any]:
        return {
            "idempotency_key": self._key(step),
            "order_id": order_id,
            "correlation_id": workflow.info().workflow_id,
        }

    def _temporal_cancel(self, err: BaseException) -> bool:
        """A Temporal cancel request, whether it hit an await or a step's retry."""
        return workflow.cancellation_reason() is not None and (
            isinstance(err, asyncio.CancelledError) or is_cancelled_exception(err)
        )

    def _cancel_requested(self) -> bool:
        if self._past_no_return:
            return False
        return self._cancel_reason is not None or workflow.cancellation_reason() is not None

    def _progress(self) -> None:
        state = self.state()
        state.steps = list(self._saga.completed)
        if len(self._saga.compensated) > len(state.compensations):
            undo = self._saga.compensated[-1]
            count("saga_compensations", "Undo steps that undid something", undo=undo)
        state.compensations = list(self._saga.compensated)

    def _reason_for(self, err: ActivityError | ApplicationError | asyncio.CancelledError) -> str:
        # A cancel update wins over what the interrupted step then reported.
        if self._cancel_reason is not None:
            return self._cancel_reason
        if isinstance(err, asyncio.CancelledError) or self._temporal_cancel(err):
            return "workflow cancelled"
        cause = err.cause if isinstance(err, ActivityError) else err
        if isinstance(cause, ApplicationError):
            return cause.message
        return f"{getattr(err, 'activity_type', 'step')} failed: {cause or err}"


async def _already_done() -> None:
    """The 2PC step as the saga records it: the work was the coordinator's."""
