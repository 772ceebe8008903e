"""Returns of an order: start one (its ReturnSaga), read one.

A return's id derives from the order and the Idempotency-Key, and its workflow
id from that (REJECT_DUPLICATE), so a repeated POST never starts a second
saga. A repeat with the same body is answered with the return it started; with
another body it is refused. What the order cannot take back (an order not
CONFIRMED, a sku it does not have, more units than are left after earlier
returns) is refused before anything starts; open_return checks again under
the order's lock, so two returns racing for the last units cannot both win.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Response, status
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api import return_queries
from api.deps import EngineDep, FlowsDep, TemporalDep
from api.order_problems import check_order_id, invalid_field, order_not_found
from api.problems import Problem
from api.return_schemas import ReturnAccepted, ReturnRequest
from api.roles import ORDER_TAKERS, READERS
from api.schemas import ID_PATTERN, ReturnView
from domain.orders import OrderStatus
from domain.returns import ReturnStatus, StartReturn, return_id_for, return_workflow_id
from domain.saga import WORKFLOW_TASK_TIMEOUT

router = APIRouter(prefix="/orders", tags=["returns"])

RequiredKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=ID_PATTERN,
        description="Required: the same key and body name the same return.",
    ),
]


@router.post(
    "/{order_id}/returns",
    dependencies=ORDER_TAKERS,
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ReturnAccepted,
    summary="Return items of a confirmed order: starts its ReturnSaga",
    responses={200: {"model": ReturnAccepted, "description": "A replayed Idempotency-Key"}},
)
async def start_return(
    order_id: str,
    body: ReturnRequest,
    response: Response,
    client: TemporalDep,
    engine: EngineDep,
    flows: FlowsDep,
    idempotency_key: RequiredKey,
) -> ReturnAccepted:
    check_order_id(order_id)
    return_id = return_id_for(order_id, idempotency_key)
    response.headers["Location"] = f"/orders/{order_id}/returns/{return_id}"
    request_hash = body.fingerprint()
    accepted = ReturnAccepted(return_id=return_id, order_id=order_id, status=ReturnStatus.OPEN)
    recorded = await return_queries.return_fingerprint(engine, return_id)
    if recorded is not None:
        response.status_code = status.HTTP_200_OK
        return _replayed(accepted, request_hash, *recorded)
    customer_id = await _check_returnable(engine, order_id, body)
    request = StartReturn(
        return_id=return_id,
        order_id=order_id,
        customer_id=customer_id,
        lines=body.lines(),
        request_hash=request_hash,
    )
    started_with = await _start(client, flows.task_queue, request)
    if started_with is not None:
        response.status_code = status.HTTP_200_OK
        return _replayed(accepted, request_hash, started_with, ReturnStatus.OPEN)
    return accepted


def _replayed(
    accepted: ReturnAccepted, request_hash: str, recorded_hash: str, current: str
) -> ReturnAccepted:
    if recorded_hash != request_hash:
        raise Problem(
            409,
            "Idempotency-Key reused",
            "this Idempotency-Key was used with a different request body",
            code="idempotency-key-reused",
        )
    return accepted.model_copy(update={"status": current})


async def _check_returnable(engine: EngineDep, order_id: str, body: ReturnRequest) -> str:
    """The order's customer; a problem naming the field if the order cannot take it back."""
    order = await return_queries.returnable(engine, order_id)
    if order is None:
        raise order_not_found(order_id)
    if order.status != OrderStatus.CONFIRMED:
        detail = f"order {order_id} is {order.status}: only a CONFIRMED order takes returns"
        raise Problem(409, "Order not returnable", detail, code="order-not-returnable")
    for n, line in enumerate(body.items):
        if not order.bought[line.sku]:
            raise invalid_field(f"items[{n}].sku", f"order {order_id} has no line {line.sku}")
    over = [
        {
            "field": f"items[{n}].quantity",
            "message": f"{order.left(line.sku)} of the {order.bought[line.sku]} x {line.sku}"
            " bought are left to return",
        }
        for n, line in enumerate(body.items)
        if line.quantity > order.left(line.sku)
    ]
    if over:
        detail = "more than is left to return: " + ", ".join(e["field"] for e in over)
        raise Problem(409, "Return exceeds order", detail, code="return-exceeds-order", errors=over)
    return order.customer_id


async def _start(client: Client, task_queue: str, request: StartReturn) -> str | None:
    """Start the return's saga; if it exists already, the fingerprint it was started with."""
    workflow_id = return_workflow_id(request.return_id)
    try:
        await client.start_workflow(
            "ReturnSaga",
            request,
            id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            task_timeout=WORKFLOW_TASK_TIMEOUT,
            memo={"request_hash": request.request_hash},
            static_summary=f"Return of order {request.order_id}",
        )
        return None
    except WorkflowAlreadyStartedError:
        description = await client.get_workflow_handle(workflow_id).describe()
        return str(await description.memo_value("request_hash", ""))


@router.get(
    "/{order_id}/returns/{return_id}",
    dependencies=READERS,
    response_model=ReturnView,
    summary="One return of an order",
)
async def get_return(
    order_id: str,
    return_id: Annotated[str, Path(min_length=1, max_length=64)],
    engine: EngineDep,
) -> ReturnView:
    check_order_id(order_id)
    found = await return_queries.return_record(engine, order_id, return_id)
    if found is None:
        raise Problem(
            404,
            "Return not found",
            f"no return {return_id} of order {order_id}",
            code="return-not-found",
        )
    return found
