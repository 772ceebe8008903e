"""The order saga: its steps, written with the saga kit (workflows.saga).

Steps, the undo each registers, and where each runs (LOCAL: a transaction in
the service's own schema, as a local activity; REMOTE: the payment provider):
  1. create_order       — cancel_order                         local
  1'. check_fraud       — none (read-only); sagas started       local
                          before it existed skip it (FRAUD_CHECK)
  2. reserve_stock      — release_stock      } card-only       local
  3. charge_payment     — refund_payment     } orders          remote
  2'. settle_two_phase  — refund_payment, refund_store_credit, release_stock:
                          orders using store credit, one 2PC across stock,
                          wallet and card (workflows.settlement)
  4. create_shipment    — cancel_shipment                      local
  5. confirm_order      — none: the point of no return; a regular
                          activity, recorded before it can apply

A business refusal (unknown product, out of stock, card declined, a 2PC that
aborted) or a step that runs out of retries undoes what was done in reverse
order and fails the workflow with the refusal's type. Cancellation (the
`cancel` update, or a Temporal cancel request) undoes the same way until
confirm_order begins; after that it is refused.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
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
    from domain.order_saga import OrderCancelAccepted, SagaState, StepName, TwoPhaseView
    from domain.orders import OrderStatus, PlaceOrder
    from domain.saga import CancelAccepted, Runs, SagaStatus
    from domain.search_attributes import CUSTOMER_ID, ORDER_STATUS, ORDER_TOTAL
    from domain.two_phase import Decision
    from workflows.metrics import count
    from workflows.saga import Saga
    from workflows.settlement import (
        CARD,
        SHIELDED_RESOLUTION,
        STORE_CREDIT,
        participants_for,
        settle_by_two_phase,
    )
    from workflows.steps import Step, UndoStep

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

RELEASE_STOCK = UndoStep(Act.RELEASE_STOCK, StockReleased, ReleaseStock)
REFUND_PAYMENT = UndoStep(Act.REFUND_PAYMENT, PaymentRefunded, RefundPayment, Runs.REMOTE)
REFUND_STORE_CREDIT = UndoStep(
    TwoPhaseAct.REFUND_STORE_CREDIT, StoreCreditRefunded, RefundStoreCredit
)

CANCEL_ORDER = UndoStep(Act.CANCEL_ORDER, OrderClosed, CloseOrder)
CREATE_ORDER = Step(StepName.CREATE_ORDER, Act.CREATE_ORDER, PricedOrder, CANCEL_ORDER)
CHECK_FRAUD = Step(StepName.CHECK_FRAUD, Act.CHECK_FRAUD, FraudCleared)
RESERVE_STOCK = Step(StepName.RESERVE_STOCK, Act.RESERVE_STOCK, StockReserved, RELEASE_STOCK)
CHARGE_PAYMENT = Step(
    StepName.CHARGE_PAYMENT,
    Act.CHARGE_PAYMENT,
    PaymentCharged,
    REFUND_PAYMENT,
    runs=Runs.REMOTE,
    retry=PROVIDER_RETRY,
    deadline=PROVIDER_BACKSTOP,
)
CREATE_SHIPMENT = Step(
    StepName.CREATE_SHIPMENT,
    Act.CREATE_SHIPMENT,
    ShipmentCreated,
    UndoStep(Act.CANCEL_SHIPMENT, ShipmentCancelled, CancelShipment),
)
CONFIRM_ORDER = Step(StepName.CONFIRM_ORDER, Act.CONFIRM_ORDER, OrderClosed)


@workflow.defn(name="OrderSaga")
class OrderSaga(Saga[SagaState]):
    steps = (
        CREATE_ORDER,
        CHECK_FRAUD,
        RESERVE_STOCK,
        CHARGE_PAYMENT,
        CREATE_SHIPMENT,
        CONFIRM_ORDER,
    )
    step_retry = STEP_RETRY
    cancelled_type = "OrderCancelled"
    not_cancellable_type = ErrorType.ORDER_NOT_CANCELLABLE

    @workflow.init
    def __init__(self, order: PlaceOrder) -> None:
        super().__init__(SagaState(order_id=order.order_id, customer_id=order.customer_id))
        self._order = order

    @workflow.run
    async def run(self, order: PlaceOrder) -> SagaState:
        return await self.execute(self.forward(order))

    async def forward(self, order: PlaceOrder) -> None:
        priced = await self.do(
            CREATE_ORDER,
            CreateOrder(
                **self.keys(StepName.CREATE_ORDER),
                customer_id=order.customer_id,
                items=order.items,
                request_hash=order.request_hash,
            ),
            f"Create order with {len(order.items)} line(s)",
        )
        self._priced(priced)
        if self._fraud_check_applies():
            command = CheckFraud(
                **self.keys(StepName.CHECK_FRAUD),
                customer_id=order.customer_id,
                total=priced.total,
                currency=priced.currency,
            )
            await self.do(CHECK_FRAUD, command, "Check for fraud")
        if order.settles_atomically:
            await self._settle_two_phase(order, priced)
        else:
            units = sum(line.quantity for line in order.items)
            reserve = ReserveStock(**self.keys(StepName.RESERVE_STOCK), items=order.items)
            await self.do(RESERVE_STOCK, reserve, f"Reserve {units} unit(s)")
            charge = ChargePayment(
                **self.keys(StepName.CHARGE_PAYMENT),
                customer_id=order.customer_id,
                amount=priced.total,
                currency=priced.currency,
                payment_token=order.payment_token,
            )
            await self.do(CHARGE_PAYMENT, charge, f"Charge {priced.total} {priced.currency}")
        shipment = CreateShipment(
            **self.keys(StepName.CREATE_SHIPMENT),
            customer_id=order.customer_id,
            items=order.items,
        )
        await self.do(CREATE_SHIPMENT, shipment, "Create shipment")
        await self._confirm()

    def _priced(self, priced: PricedOrder) -> None:
        state = self.state()
        state.items, state.total, state.currency = priced.items, priced.total, priced.currency
        workflow.upsert_search_attributes([ORDER_TOTAL.value_set(priced.total)])

    def _fraud_check_applies(self) -> bool:
        return workflow.patched(FRAUD_CHECK)

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
        outcome = await settle_by_two_phase(
            self, order.order_id, specs, order.prepare_timeout_s, self._shields_resolution
        )
        state.two_phase = TwoPhaseView.of(outcome)
        if outcome.decision is not Decision.COMMIT:
            refusal = next(iter(outcome.refusals.values()), "TwoPhaseAborted")
            reason = "; ".join(f"{k}: {v}" for k, v in outcome.reasons.items()) or "aborted"
            raise ApplicationError(reason, type=refusal, non_retryable=True)
        # Committed, but shipping may still fail: each effect gets its undo.
        self.register(self.undo_of(RELEASE_STOCK, StepName.RESERVE_STOCK))
        names = {p.name for p in specs}
        if STORE_CREDIT in names:
            self.register(self.undo_of(REFUND_STORE_CREDIT, StepName.SETTLE_TWO_PHASE))
        if CARD in names:
            self.register(self.undo_of(REFUND_PAYMENT, StepName.CHARGE_PAYMENT))
        await self.mark_done(StepName.SETTLE_TWO_PHASE)

    def _shields_resolution(self) -> bool:
        return workflow.patched(SHIELDED_RESOLUTION)

    async def _confirm(self) -> None:
        command = CloseOrder(
            **self.keys(StepName.CONFIRM_ORDER),
            steps=[*self.completed, StepName.CONFIRM_ORDER],
        )
        closed: OrderClosed = await self.final_step(CONFIRM_ORDER, command, "Confirm order")
        if closed.status != OrderStatus.CONFIRMED:
            # e.g. a reset replayed the steps of an order already cancelled.
            raise ApplicationError(
                f"order {self._order.order_id} could not be confirmed: it is {closed.status}",
                type=ErrorType.ORDER_CLOSED,
                non_retryable=True,
            )
        self.confirmed()

    def undo_fields(self, step: Step) -> dict[str, Any]:
        """What cancel_order records: the saga's account of what happened, and
        enough to recognise a repeat of the request if no order was created."""
        if step is not CREATE_ORDER:
            return {}
        return {
            "steps": self.completed,
            "compensations": [*self.compensated, Act.CANCEL_ORDER],
            "failure_reason": self.state().failure_reason,
            "customer_id": self._order.customer_id,
            "request_hash": self._order.request_hash,
        }

    # -- the kit's hooks -------------------------------------------------------

    def describe(self) -> str:
        return f"order {self._order.order_id}"

    def command_fields(self) -> dict[str, Any]:
        return {"order_id": self._order.order_id}

    def queue_for(self, action: str) -> str:
        return queue_for(action, workflow.info().task_queue)

    def cancel_accepted(self) -> CancelAccepted:
        return OrderCancelAccepted(order_id=self._order.order_id)

    def on_started(self) -> None:
        order = self._order
        workflow.upsert_search_attributes(
            [ORDER_STATUS.value_set(OrderStatus.PENDING), CUSTOMER_ID.value_set(order.customer_id)]
        )
        settlement = "two_phase" if order.settles_atomically else "saga"
        count("saga_started", "Order sagas started", settlement=settlement)

    def on_compensating(self, reason: str) -> None:
        workflow.upsert_search_attributes([ORDER_STATUS.value_set("COMPENSATING")])
        super().on_compensating(reason)

    def on_undone(self, undo: str) -> None:
        count("saga_compensations", "Undo steps that undid something", undo=undo)

    def on_compensated(self, reason: str) -> None:
        count("saga_compensated", "Order sagas that ended undone", reason=reason)

    def on_ended(self, status: SagaStatus, reason: str | None) -> None:
        if status is SagaStatus.CONFIRMED:
            count("saga_confirmed", "Order sagas that ended confirmed")
        workflow.upsert_search_attributes([ORDER_STATUS.value_set(status.value)])
        super().on_ended(status, reason)
