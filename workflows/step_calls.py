"""How the saga kit calls a step's or an undo's activity.

- each step's idempotency key, `<workflow id>:<step>`, the same on every
  attempt and every replay, and the undo's key fencing off the step it undoes;
- where the step runs: a LOCAL step (a short transaction in one service's
  database) as a local activity on this worker, a REMOTE one (a call to a
  system outside ours) on its own task queue (`queue_for`);
- its timeouts and retry policy, and the wait for a cancelled attempt.

What happens around the calls (compensation, cancel, progress) is the saga's
(workflows.saga). Only `temporalio`, workflows.compensation, workflows.steps,
the hooks (workflows.saga_hooks) and the progress model (domain.saga) are
imported here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from domain.saga import Runs
    from workflows.compensation import UNDO_RETRY
    from workflows.saga_hooks import P, SagaHooks
    from workflows.steps import LOCAL_STEPS, STEP_RETRY, STEP_TIMEOUT, UndoStep, run_step

R = TypeVar("R")
Undo = tuple[str, Callable[[], Awaitable[Any]]]


class StepCalls(SagaHooks[P]):
    """Keys, undos and activity calls; `Saga` derives from it."""

    step_retry: RetryPolicy = STEP_RETRY
    # The progress the saga reports (Saga.__init__ sets it): each call names its step.
    _progress: P

    def undo_of(
        self, undo: UndoStep, undoes: str, fields: Callable[[], dict[str, Any]] = dict
    ) -> Undo:
        """The undo of step `undoes`; `fields` adds to its input what is known only
        when it runs (what was done, why it is undone)."""

        def run() -> Awaitable[Any]:
            assert undo.command is not None, f"{undo.action} has no command to build"
            command = undo.command(**self.keys(undo.action), fences=self.key(undoes), **fields())
            return self.call(
                undo.action,
                command,
                undo.result,
                f"Undo {undoes}: {undo.action}",
                runs=undo.runs,
                retry=UNDO_RETRY,
            )

        return undo.action, run

    async def call(
        self,
        action: str,
        arg: Any,
        result: type[R],
        summary: str,
        *,
        runs: Runs = Runs.LOCAL,
        retry: RetryPolicy | None = None,
        deadline: timedelta | None = None,
    ) -> R:
        self._progress.current_step = action
        self.on_step(action, summary)
        # Wait for a cancelled attempt to finish: undoing a step whose
        # transaction is still in flight would leave its effect behind.
        waits = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
        return await run_step(
            action,
            arg,
            result,
            summary,
            local=runs is Runs.LOCAL and self._local_steps(),
            task_queue=self.queue_for(action),
            start_to_close_timeout=STEP_TIMEOUT,
            schedule_to_close_timeout=deadline,
            retry_policy=retry or self.step_retry,
            cancellation_type=waits,
        )

    def key(self, step: str) -> str:
        return f"{workflow.info().workflow_id}:{step}"

    def keys(self, step: str) -> dict[str, Any]:
        return {
            "idempotency_key": self.key(step),
            "correlation_id": workflow.info().workflow_id,
            **self.command_fields(),
        }

    def _local_steps(self) -> bool:
        # Asked first by the first LOCAL step: a saga begun before the patch
        # replays without it and never mixes the two.
        return workflow.patched(LOCAL_STEPS)
