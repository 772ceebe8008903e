"""Returns in tests: start a ReturnSaga, read what it left in each service's schema."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowHandle

from db.tables import restocks, return_receipts, return_refunds, returns
from domain.returns import ReturnLine, ReturnState, StartReturn, return_workflow_id
from domain.saga import WORKFLOW_TASK_TIMEOUT


async def start_return(
    client: Client,
    task_queue: str,
    order_id: str,
    customer_id: str,
    lines: Sequence[tuple[str, int]],
) -> WorkflowHandle[Any, ReturnState]:
    request = StartReturn(
        return_id=str(uuid.uuid4()),
        order_id=order_id,
        customer_id=customer_id,
        lines=[ReturnLine(sku=sku, quantity=qty) for sku, qty in lines],
    )
    return await client.start_workflow(
        "ReturnSaga",
        request,
        id=return_workflow_id(request.return_id),
        task_queue=task_queue,
        task_timeout=WORKFLOW_TASK_TIMEOUT,
        result_type=ReturnState,
    )


async def _by_return(engine: AsyncEngine, table: Any, return_id: str) -> list[Any]:
    async with engine.connect() as conn:
        query = select(table).where(table.c.return_id == return_id)
        return list((await conn.execute(query)).all())


async def return_of(engine: AsyncEngine, return_id: str) -> Any:
    found = await _by_return(engine, returns, return_id)
    return found[0] if found else None


async def restocks_of(engine: AsyncEngine, return_id: str) -> list[Any]:
    return await _by_return(engine, restocks, return_id)


async def receipts_of(engine: AsyncEngine, return_id: str) -> list[Any]:
    return await _by_return(engine, return_receipts, return_id)


async def refunds_of(engine: AsyncEngine, return_id: str) -> list[Any]:
    return await _by_return(engine, return_refunds, return_id)
