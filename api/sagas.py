"""The API's side of the saga: start it, read its live state, ask it to cancel.

The workflow id is the business key (`order-{order_id}`) and Temporal refuses a
second workflow with the same id, so a repeated POST can never start a second
saga, whichever API replica receives it.

Queries and updates are answered by a worker, not by Temporal's server: while
no worker runs the saga they wait. Each call here is bounded, so a request
gets an answer (the database's record, or a 503) in seconds, not a hang.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WorkflowFailureError,
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

from api import queries
from domain.order_saga import OrderCancelAccepted, SagaState, TwoPhaseView
from domain.order_summary import clip
from domain.orders import OrderStatus, PlaceOrder, workflow_id_for
from domain.saga import WORKFLOW_TASK_TIMEOUT, CancelRequest
from domain.search_attributes import CUSTOMER_ID, ORDER_STATUS, ORDER_SUMMARY
from domain.two_phase import TwoPhaseOutcome, coordinator_workflow_id

SAGA_WORKFLOW = "OrderSaga"
IDEMPOTENCY_NAMESPACE = uuid.UUID("0c8e2f4a-58a3-4b8e-a7c4-9f1d6e3b2a10")
QUERY_TIMEOUT = timedelta(seconds=2)
UPDATE_TIMEOUT = timedelta(seconds=5)
# Over the RPC deadline: the SDK may retry an RPC, or poll an update again.
_GRACE_S = 0.5

T = TypeVar("T")


class SagaUnavailable(Exception):
    """Temporal, or the worker that runs the saga, did not answer in time."""


class NotCancellable(Exception):
    pass


def order_id_for_key(idempotency_key: str | None) -> str:
    """A client's Idempotency-Key names one order forever; without a key every POST is new."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, idempotency_key))


async def start_saga(
    client: Client, task_queue: str, order: PlaceOrder, summary: str | None = None
) -> str | None:
    """Start the order's saga; if it exists already, return the fingerprint it was started with.

    `summary` (domain.order_summary) says what the order is: on the saga's page in the Web
    UI (its static summary) and in the list of workflows (its OrderSummary column).
    """
    summary = clip(summary or f"Order {order.order_id} for {order.customer_id}")
    try:
        await client.start_workflow(
            SAGA_WORKFLOW,
            order,
            id=workflow_id_for(order.order_id),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            task_timeout=WORKFLOW_TASK_TIMEOUT,
            memo={"request_hash": order.request_hash},
            # Set at start so the order is listed by status and customer at once.
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(ORDER_STATUS, OrderStatus.PENDING.value),
                    SearchAttributePair(CUSTOMER_ID, order.customer_id),
                    SearchAttributePair(ORDER_SUMMARY, summary),
                ]
            ),
            static_summary=summary,
        )
        return None
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle(workflow_id_for(order.order_id))
        description = await handle.describe()
        return str(await description.memo_value("request_hash", ""))


async def _bounded(call: Awaitable[T], rpc_timeout: timedelta) -> T:
    # wait_for, not asyncio.timeout: the SDK turns the cancellation into its own
    # error, which asyncio.timeout would not recognise as its deadline.
    try:
        return await asyncio.wait_for(call, rpc_timeout.total_seconds() + _GRACE_S)
    except (TimeoutError, RPCTimeoutOrCancelledError) as err:
        raise SagaUnavailable(f"no answer within {rpc_timeout.total_seconds():g}s") from err


async def live_state(client: Client, order_id: str) -> SagaState | None:
    """The saga's own view; None when Temporal has no such workflow.

    SagaUnavailable when it exists but nobody answers (its worker is down).
    """
    handle = client.get_workflow_handle(workflow_id_for(order_id))
    try:
        state: SagaState = await _bounded(
            handle.query("state", result_type=SagaState, rpc_timeout=QUERY_TIMEOUT),
            QUERY_TIMEOUT,
        )
        return state
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise SagaUnavailable(err.message) from err
    except WorkflowQueryFailedError:
        return None


async def ended_within(client: Client, order_id: str, seconds: float) -> bool:
    """Wait up to `seconds` for the saga to end (confirmed or undone); whether it did.

    A long poll on the workflow's history: Temporal answers when it closes,
    no worker is asked anything meanwhile.
    """
    handle = client.get_workflow_handle(workflow_id_for(order_id))
    try:
        await asyncio.wait_for(handle.result(), seconds)
    except WorkflowFailureError:
        return True  # undone, cancelled or refused: ended all the same
    except (TimeoutError, RPCError, RPCTimeoutOrCancelledError):
        return False
    return True


async def live_votes(client: Client, order_id: str) -> TwoPhaseOutcome | None:
    """The coordinator's votes so far, while its saga waits for the decision."""
    handle = client.get_workflow_handle(coordinator_workflow_id(order_id))
    try:
        outcome: TwoPhaseOutcome = await _bounded(
            handle.query("outcome", result_type=TwoPhaseOutcome, rpc_timeout=QUERY_TIMEOUT),
            QUERY_TIMEOUT,
        )
        return outcome
    except (RPCError, WorkflowQueryFailedError, SagaUnavailable):
        return None  # the votes are a courtesy; the saga's own view still answers


async def two_phase_progress(
    client: Client, engine: AsyncEngine, known: TwoPhaseView
) -> TwoPhaseView:
    """While the saga waits on its 2PC: the coordinator's own progress, or else
    what its log holds (a coordinator gone, the saga resolving it itself)."""
    progress = await live_votes(client, known.tx_id)
    if progress is not None and progress.decision is not None:
        return TwoPhaseView.of(progress)
    logged = await queries.two_phase_logged(engine, known.tx_id)
    if logged is not None:
        return logged
    if progress is not None:
        return TwoPhaseView(tx_id=known.tx_id, votes=progress.votes, phase=progress.phase)
    return known


async def request_cancel(client: Client, order_id: str, reason: str) -> OrderCancelAccepted | None:
    """None when no running saga has this id; NotCancellable when the saga refuses.

    SagaUnavailable when the saga did not answer in time: the update may still
    be delivered once its worker is back.
    """
    handle = client.get_workflow_handle(workflow_id_for(order_id))
    try:
        accepted: OrderCancelAccepted = await _bounded(
            handle.execute_update(
                "cancel",
                CancelRequest(reason=reason),
                result_type=OrderCancelAccepted,
                rpc_timeout=UPDATE_TIMEOUT,
            ),
            UPDATE_TIMEOUT,
        )
        return accepted
    except WorkflowUpdateFailedError as err:
        # The validator's refusal (OrderNotCancellable), or the handler failed:
        # either way the saga said no, and its words say why.
        cause = err.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
        raise NotCancellable(message) from err
    except RPCError as err:
        # A closed workflow takes no updates: the order is already final.
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            return None
        raise SagaUnavailable(err.message) from err
