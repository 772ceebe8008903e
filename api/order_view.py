"""An order as GET /orders/{id} shows it, from whichever source knows it best.

An ended order is its row; a choreographed one, its row and its events
(api.choreographed). A running saga's view is built from what its steps
committed (api.progress), except while it undoes them: then only the saga
knows why, and its `state` query answers. Before the row exists the query
answers too; when Temporal does not, the row (older, but an answer) does.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from api import choreographed, queries, sagas
from api.order_problems import order_not_found, unavailable
from api.progress import committed_progress
from api.schemas import OrderView
from domain.orders import OrderStatus, SagaMode


async def order_view(order_id: str, client: Client, engine: AsyncEngine) -> OrderView:
    record = await queries.order_record(engine, order_id)
    if record is not None and record.mode is SagaMode.CHOREOGRAPHY:
        return await choreographed.view(engine, record)
    if record is not None and record.status != OrderStatus.PENDING:
        return record
    if record is not None:
        served = await _from_commits(client, engine, record)
        if served is not None:
            return served
    try:
        live = await sagas.live_state(client, order_id)
    except sagas.SagaUnavailable as err:
        # The record is older than the saga's own view, but it is an answer.
        if record is not None:
            return record
        raise unavailable("order state temporarily unavailable") from err
    if live is None:
        if record is None:
            raise order_not_found(order_id)
        return record
    if live.two_phase is not None and live.two_phase.decision is None:
        live.two_phase = await sagas.two_phase_progress(client, engine, live.two_phase)
    return OrderView(**live.model_dump(exclude={"compensating"}))


async def _from_commits(client: Client, engine: AsyncEngine, record: OrderView) -> OrderView | None:
    """A running saga's view from what its steps committed (api.progress); None while it
    undoes them, when only the saga knows why."""
    two_phase = record.two_phase
    settled = two_phase is not None and two_phase.decision == "COMMIT" and two_phase.phase == "done"
    async with engine.connect() as conn:
        progress = await committed_progress(conn, record.order_id, settled)
    if progress.undoing:
        return None
    record.steps, record.current_step = progress.steps, progress.current_step
    if two_phase is not None and two_phase.phase != "done":
        # Phase 2 under way: who has acknowledged, only the coordinator knows yet.
        record.two_phase = await sagas.two_phase_progress(client, engine, two_phase)
    return record
