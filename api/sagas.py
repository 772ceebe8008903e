"""The API's side of the saga: start it, read its live state, ask it to cancel.

The workflow id is the business key (`order-{order_id}`) and Temporal refuses a
second workflow with the same id, so a repeated POST can never start a second
saga, whichever API replica receives it.
"""

from __future__ import annotations

import uuid

from temporalio.client import (
    Client,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from domain.errors import ErrorType
from domain.orders import OrderStatus, PlaceOrder, workflow_id_for
from domain.saga import CancelAccepted, CancelRequest, SagaState
from domain.search_attributes import CUSTOMER_ID, ORDER_STATUS

SAGA_WORKFLOW = "OrderSaga"
IDEMPOTENCY_NAMESPACE = uuid.UUID("0c8e2f4a-58a3-4b8e-a7c4-9f1d6e3b2a10")


def order_id_for_key(idempotency_key: str | None) -> str:
    """A client's Idempotency-Key names one order forever; without a key every POST is new."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, idempotency_key))


async def start_saga(client: Client, task_queue: str, order: PlaceOrder) -> str | None:
    """Start the order's saga; if it exists already, return the fingerprint it was started with."""
    try:
        await client.start_workflow(
            SAGA_WORKFLOW,
            order,
            id=workflow_id_for(order.order_id),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            memo={"request_hash": order.request_hash},
            # Set at start so the order is listed by status and customer at once.
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(ORDER_STATUS, OrderStatus.PENDING.value),
                    SearchAttributePair(CUSTOMER_ID, order.customer_id),
                ]
            ),
            static_summary=f"Order {order.order_id} for {order.customer_id}",
        )
        return None
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle(workflow_id_for(order.order_id))
        description = await handle.describe()
        return str(await description.memo_value("request_hash", ""))


async def live_state(client: Client, order_id: str) -> SagaState | None:
    """The saga's own view, or None when Temporal has no such workflow."""
    handle = client.get_workflow_handle(workflow_id_for(order_id))
    try:
        state: SagaState = await handle.query("state", result_type=SagaState)
        return state
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    except WorkflowQueryFailedError:
        return None


class NotCancellable(Exception):
    pass


async def request_cancel(client: Client, order_id: str, reason: str) -> CancelAccepted | None:
    """None when no running saga has this id; NotCancellable when the saga refuses."""
    handle = client.get_workflow_handle(workflow_id_for(order_id))
    try:
        accepted: CancelAccepted = await handle.execute_update(
            "cancel", CancelRequest(reason=reason), result_type=CancelAccepted
        )
        return accepted
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type == ErrorType.ORDER_NOT_CANCELLABLE:
            raise NotCancellable(cause.message) from err
        raise
    except RPCError as err:
        # A closed workflow takes no updates: the order is already final.
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            return None
        raise
