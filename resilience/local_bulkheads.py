"""Bulkheads for local activities: each service's steps within its own concurrency limit.

Local activities all run on the workflow's worker, in its local activity
slots. Each service's LOCAL steps (domain.saga.Runs) share one
ConcurrencyLimit, and the worker has as many slots as the limits add up to, so
a stalled database fills its own service's share and nothing else. A step
over its limit fails retryably (`BulkheadFull`) and its retry policy backs it off.

A local activity, unlike a regular one, is told when its workflow cancels it.
The transaction it is running is let finish: its outcome is what the step did,
and the workflow (WAIT_CANCELLATION_COMPLETED) undoes it only after.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from resilience.concurrency import ConcurrencyLimit, LimitReached

T = TypeVar("T")
BULKHEAD_FULL = "BulkheadFull"


class LocalBulkheads(Interceptor):
    def __init__(self, limits: Mapping[str, ConcurrencyLimit]) -> None:
        """`limits`: the limit of each activity, by activity name."""
        self.limits = dict(limits)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Limited(next, self.limits)

    @property
    def slots(self) -> int:
        """Local activity slots for a worker: every limit's share, once."""
        return sum(limit.limit for limit in {id(x): x for x in self.limits.values()}.values())


class _Limited(ActivityInboundInterceptor):
    def __init__(
        self, next: ActivityInboundInterceptor, limits: Mapping[str, ConcurrencyLimit]
    ) -> None:
        super().__init__(next)
        self._limits = limits

    async def execute_activity(self, input: ExecuteActivityInput) -> object:
        info = activity.info()
        limit = self._limits.get(info.activity_type)
        if not info.is_local or limit is None:
            return await super().execute_activity(input)
        try:
            async with limit.slot():
                return await _to_its_end(super().execute_activity(input))
        except LimitReached as full:
            raise ApplicationError(str(full), type=BULKHEAD_FULL) from None


async def _to_its_end(work: Awaitable[T]) -> T:
    """`work`'s outcome, even if this task is cancelled meanwhile."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        activity.logger.info("cancelled while its transaction ran; it finished first")
    return result
