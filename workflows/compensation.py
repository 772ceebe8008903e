"""A reusable compensation stack for sagas.

Each step registers its undo *before* it runs, and every registered undo runs
on failure: an attempt that timed out, or an earlier attempt of a step whose
last attempt was refused, may still commit after the saga moved on. Undos are
idempotent, fence off the step they undo (db.unit_of_work), and report whether
they undid anything; only those that did are listed as compensations.

On failure or cancellation `compensate()` runs the undos in reverse order,
shielded from cancellation, each retried until it succeeds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

T = TypeVar("T")

# An undo gives up never: a half-undone order is worse than a slow one. Operators
# see a stuck undo in the UI as a pending activity with a growing attempt count.
UNDO_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=0,
)


def refusal_type(err: BaseException) -> str | None:
    """The business error type behind an activity failure, if it was a refusal."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.non_retryable and cause.type:
        return cause.type
    return None


@dataclass
class Compensations:
    on_progress: Callable[[], None] = lambda: None
    # Asked after each step. A step whose activity finished after cancellation
    # was requested returns normally (the SDK waits for the activity and hands
    # back its result), so the request must be checked for, not only caught.
    cancel_requested: Callable[[], bool] = lambda: False
    completed: list[str] = field(default_factory=list)
    compensated: list[str] = field(default_factory=list)
    _undos: list[tuple[str, Callable[[], Awaitable[Any]]]] = field(default_factory=list)

    async def step(
        self,
        name: str,
        run: Callable[[], Awaitable[T]],
        undo: tuple[str, Callable[[], Awaitable[Any]]] | None = None,
    ) -> T:
        if undo is not None:
            self._undos.append(undo)
        result = await run()
        self.completed.append(name)
        self.on_progress()
        if self.cancel_requested():
            raise asyncio.CancelledError(f"cancelled after {name}")
        return result

    def register(self, name: str, undo: Callable[[], Awaitable[Any]]) -> None:
        """An undo for an effect already known to have happened."""
        self._undos.append((name, undo))

    @property
    def pending_undos(self) -> list[str]:
        return [name for name, _ in reversed(self._undos)]

    async def compensate(self) -> None:
        # A second cancellation must not interrupt the undos.
        await shielded(self._undo_all(), "compensating")

    async def _undo_all(self) -> None:
        # One undo failing for good must not keep the others from running.
        failures: list[BaseException] = []
        while self._undos:
            name, undo = self._undos.pop()
            try:
                result = await undo()
            except FailureError as err:  # a local undo's may replay as its bare cause
                workflow.logger.error("undo %s failed for good: %s", name, err)
                failures.append(err)
                continue
            if getattr(result, "undid", True):
                self.compensated.append(name)
            self.on_progress()
        if failures:
            raise failures[0]


async def shielded(work: Awaitable[T], doing: str) -> T:
    """Run `work` to its end whatever cancellations arrive meanwhile.

    A deferred cancellation is the caller's to act on afterwards (the saga
    records every cancel request as state), so the ones absorbed here leave no
    trace on the awaiting task: Python 3.11+ counts each `cancel()`, and a count
    left behind makes a later TaskGroup or asyncio.timeout in this task raise
    CancelledError instead of its own outcome.
    """
    current = asyncio.current_task()
    absorbed_from = current.cancelling() if current is not None else 0
    task = asyncio.ensure_future(work)
    while not task.done():
        try:
            await workflow.wait([task])
        except asyncio.CancelledError:
            workflow.logger.info("cancellation deferred while %s", doing)
            while current is not None and current.cancelling() > absorbed_from:
                current.uncancel()
    return task.result()
