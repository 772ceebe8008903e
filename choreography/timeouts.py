"""The orders service's timeout: a choreographed order open past its deadline is cancelled.

No process waits on a choreographed order, so a service that is down, or an
event given up on, would leave it open for ever, holding stock and money.
The orders service owns the deadline: each sweep cancels what is overdue, and
the OrderCancelled it writes makes every service undo its own step. The
reason names the step the order stalled before, as the order history saw it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from choreography.orders import cancel
from db.tables import order_history, orders
from domain.choreography import FORWARD_STEPS, progress_of
from domain.orders import OrderStatus, SagaMode

log = logging.getLogger(__name__)

BATCH = 100
# A choreographed order still open, and one of those past its deadline.
OPEN = (orders.c.status == OrderStatus.PENDING.value) & (
    orders.c.saga_mode == SagaMode.CHOREOGRAPHY.value
)
PAST_DEADLINE = orders.c.deadline_at < func.now()


@dataclass
class TimeoutStats:
    """What this process's sweeps did (choreography.metrics shows it)."""

    timed_out: int = 0
    failed: int = 0  # orders a sweep could not cancel; the next sweep tries again
    failed_sweeps: int = 0


async def cancel_overdue(engine: AsyncEngine, stats: TimeoutStats | None = None) -> list[str]:
    """Cancel every choreographed order past its deadline; the ids cancelled.

    Every orders-service process sweeps, and the cancel's key is shared: two
    sweeps cancelling one order at once both find it cancelled and list it.
    """
    async with engine.connect() as conn:
        overdue = (
            await conn.execute(
                select(orders.c.order_id, orders.c.deadline_at)
                .where(OPEN, PAST_DEADLINE)
                .order_by(orders.c.deadline_at)
                .limit(BATCH)
            )
        ).all()
    cancelled = []
    for order_id, deadline in overdue:
        try:
            reason = await stall_reason(engine, order_id, deadline)
            closed = await cancel(engine, order_id, reason)
        except Exception:
            # One order that cannot be cancelled must not hold up the others.
            log.exception("timeout of order %s failed; next sweep tries again", order_id)
            if stats is not None:
                stats.failed += 1
            continue
        if closed is not None and closed.undid:
            log.warning("order %s timed out: %s", order_id, reason, extra={"order_id": order_id})
            cancelled.append(order_id)
    return cancelled


async def stall_reason(engine: AsyncEngine, order_id: str, deadline: datetime) -> str:
    async with engine.connect() as conn:
        seen = set(
            await conn.scalars(
                select(order_history.c.event_type).where(order_history.c.order_id == order_id)
            )
        )
    waiting = progress_of(seen).waiting_for or FORWARD_STEPS[-1]
    return f"timed out waiting for {waiting} (deadline {deadline.isoformat(timespec='seconds')})"


async def run_periodically(
    engine: AsyncEngine, stop: asyncio.Event, interval_s: float, stats: TimeoutStats | None = None
) -> None:
    """Sweep every `interval_s` until `stop`; a failed sweep is logged and tried again."""
    stats = stats or TimeoutStats()
    while not stop.is_set():
        try:
            stats.timed_out += len(await cancel_overdue(engine, stats))
        except Exception:
            stats.failed_sweeps += 1
            log.exception("timeout sweep failed; trying again in %.1f s", interval_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
