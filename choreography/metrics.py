"""The orders service's view of its choreographed orders, for the metrics page.

No process waits on a choreographed order, so these gauges are how an
operator sees them: how many are open, how many are past their deadline (more
than zero for longer than a sweep interval means they are not being cancelled:
no sweep runs, or a sweep fails on them), and how many the timeout has
cancelled. The counters are this process's: two sweeps racing for one order
may both count it.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from choreography.timeouts import OPEN, PAST_DEADLINE, TimeoutStats
from db.tables import orders


async def lines(engine: AsyncEngine, timeouts: TimeoutStats) -> list[str]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    func.count(),
                    func.count().filter(PAST_DEADLINE),
                    func.min(orders.c.deadline_at).filter(PAST_DEADLINE),
                    func.now(),
                ).where(OPEN)
            )
        ).one()
    open_orders, overdue_orders, oldest_deadline, now = row
    overdue_s = (now - oldest_deadline).total_seconds() if oldest_deadline is not None else 0.0
    return [
        "# HELP saga_choreography_open_orders Choreographed orders still PENDING.",
        "# TYPE saga_choreography_open_orders gauge",
        f"saga_choreography_open_orders {open_orders}",
        "# HELP saga_choreography_overdue_orders PENDING past their deadline, not yet swept.",
        "# TYPE saga_choreography_overdue_orders gauge",
        f"saga_choreography_overdue_orders {overdue_orders}",
        "# HELP saga_choreography_overdue_seconds How far past its deadline the oldest is.",
        "# TYPE saga_choreography_overdue_seconds gauge",
        f"saga_choreography_overdue_seconds {overdue_s:.3f}",
        "# HELP saga_choreography_timed_out_total Orders this process's sweep cancelled.",
        "# TYPE saga_choreography_timed_out_total counter",
        f"saga_choreography_timed_out_total {timeouts.timed_out}",
        "# HELP saga_choreography_timeout_failures_total Overdue orders a sweep could not cancel.",
        "# TYPE saga_choreography_timeout_failures_total counter",
        f"saga_choreography_timeout_failures_total {timeouts.failed}",
        "# HELP saga_choreography_failed_sweeps_total Sweeps that failed (retried next interval).",
        "# TYPE saga_choreography_failed_sweeps_total counter",
        f"saga_choreography_failed_sweeps_total {timeouts.failed_sweeps}",
    ]
