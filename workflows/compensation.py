"""A reusable compensation stack for sagas.

Each step registers its undo *before* it runs: an activity that timed out or
was cancelled may still have committed, so its undo must run anyway (undos are
idempotent and do nothing when there is nothing to undo). Only a business
refusal proves the step changed nothing, so only then is its undo dropped.

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
from temporalio.exceptions import ActivityError, ApplicationError

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
        try:
            result = await run()
        except ActivityError as err:
            if undo is not None and refusal_type(err) is not None:
                self._undos.remove(undo)
            raise
        self.completed.append(name)
        self.on_progress()
        if self.cancel_requested():
            raise asyncio.CancelledError(f"cancelled after {name}")
        return result

    @property
    def pending_undos(self) -> list[str]:
        return [name for name, _ in reversed(self._undos)]

    async def compensate(self) -> None:
        task = asyncio.create_task(self._undo_all())
        # A second cancellation must not interrupt the undos: keep waiting.
        while not task.done():
            try:
                await workflow.wait([task])
            except asyncio.CancelledError:
                workflow.logger.info("cancellation ignored while compensating")
        task.result()

    async def _undo_all(self) -> None:
        while self._undos:
            name, undo = self._undos.pop()
            await undo()
            self.compensated.append(name)
            self.on_progress()
