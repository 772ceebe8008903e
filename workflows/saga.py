"""The saga kit: what every orchestrated saga needs, whatever its steps do.

A saga is a workflow class deriving from `Saga`, with its steps declared as
`Step`s and a `forward` that runs them in order (see workflows/order_saga.py,
and the README's "Writing a saga"). The kit gives it:

- each step's idempotency key, the undo's key fencing off the step it undoes,
  and where the step runs, LOCAL or REMOTE (workflows.step_calls);
- compensation: every undo registered before its step runs, run in reverse on
  a refusal, a step out of retries or a cancel, then the workflow fails with
  the refusal's type (workflows.compensation);
- the `cancel` update and its validator, and the point of no return
  (`final_step`) after which a cancel is refused;
- progress for the `state` query, and hooks for what the UI and the search
  attributes show (`on_started`, `on_step`, `on_compensating`, `on_ended`;
  workflows.saga_hooks).

Only `temporalio`, the kit's own modules (workflows.compensation, .steps,
.step_calls, .saga_hooks) and the progress model (domain.saga) are imported
here: the kit knows nothing of any saga's domain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, ClassVar

from temporalio import workflow
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    is_cancelled_exception,
)

with workflow.unsafe.imports_passed_through():
    from domain.saga import CancelAccepted, CancelRequest, Runs, SagaStatus
    from workflows.compensation import UNDO_RETRY, Compensations, refusal_type, shielded
    from workflows.saga_hooks import P
    from workflows.step_calls import StepCalls, Undo
    from workflows.steps import Step


class Saga(StepCalls[P]):
    """Derive, decorate with @workflow.defn, and give it an @workflow.init
    `__init__` that calls `super().__init__(progress)` and an @workflow.run that
    returns `await self.execute(self.forward(...))`."""

    # The plan: every step the saga may run, in order. Compensation needs it:
    # a LOCAL step run by a workflow task that was then lost (a worker died, a
    # cancel arrived) may have committed unseen, and its undo must run all the same.
    steps: ClassVar[tuple[Step, ...]] = ()
    # The failure type of a saga undone by its `cancel` update, and of one whose
    # step failed without a refusal type.
    cancelled_type = "SagaCancelled"
    failed_type = "StepFailed"
    not_cancellable_type = "SagaNotCancellable"

    def __init__(self, progress: P) -> None:
        # Built before any handler runs: a cancel update can arrive in the very
        # first workflow task, before run() has started.
        self._progress = progress
        self._saga = Compensations(on_progress=self._progressed, cancel_requested=self._cancelling)
        self._steps: asyncio.Task[None] | None = None
        self._cancel_reason: str | None = None
        self._past_no_return = False
        self._started: set[str] = set()

    # -- running ---------------------------------------------------------------

    async def execute(self, forward: Coroutine[Any, Any, None]) -> P:
        """Run the steps; on a refusal, a failed step or a cancel, undo and fail typed."""
        self.on_started()
        self._steps = asyncio.create_task(forward)
        try:
            await self._steps
        except (FailureError, asyncio.CancelledError) as err:
            # Only step failures, refusals and cancellation compensate. A bug in
            # the saga fails the workflow task instead, so a fixed worker resumes it.
            # (A local step's failure may replay as its cause alone, a bare
            # TimeoutError: every Temporal failure counts, not only ActivityError.)
            self._register_unseen_undos()
            await self._undo(self._reason_for(err))
            cancelled = self._cancel_reason is not None or self._temporal_cancel(err)
            self.on_compensated(refusal_type(err) or ("cancelled" if cancelled else "refused"))
            await workflow.wait_condition(workflow.all_handlers_finished)
            if self._cancel_reason is None and self._temporal_cancel(err):
                raise asyncio.CancelledError("workflow cancelled") from err  # ends Canceled
            raise ApplicationError(
                f"{self.describe()} cancelled: {self._progress.failure_reason}",
                type=refusal_type(err)
                or (self.cancelled_type if self._cancel_reason else self.failed_type),
                non_retryable=True,
            ) from err
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._progress

    async def do(
        self,
        step: Step,
        command: Any,
        summary: str,
        undo: Undo | None = None,
    ) -> Any:
        """Run `step` with `command`; its undo (given, or built from step.undo) is
        registered first: an attempt that timed out may still commit."""
        if undo is None and step.undo is not None:
            undo = self.undo_of(step.undo, step.name, lambda: self.undo_fields(step))
        self._started.add(step.name)
        return await self._saga.step(
            step.name,
            lambda: self.call(
                step.action,
                command,
                step.result,
                summary,
                runs=step.runs,
                retry=step.retry,
                deadline=step.deadline,
            ),
            undo=undo,
        )

    async def final_step(self, step: Step, command: Any, summary: str) -> Any:
        """The point of no return: once it begins, a cancel neither interrupts it
        nor undoes the others (the caller is about to be told "done").

        It runs as a regular activity whatever `step.runs` says: its start is
        recorded before it can apply, so no lost workflow task can confirm
        what a later run of the saga then undoes. (A local activity is recorded
        only when its workflow task completes.)
        """
        self._past_no_return = True
        self._started.add(step.name)
        return await shielded(
            self._saga.step(
                step.name,
                lambda: self.call(
                    step.action, command, step.result, summary, runs=Runs.REMOTE, retry=UNDO_RETRY
                ),
            ),
            f"finishing {self.describe()}",
        )

    def register(self, undo: Undo) -> None:
        """An undo for an effect already known to have happened."""
        self._saga.register(*undo)

    def mark_done(self, step: str) -> Awaitable[None]:
        """Record `step` as done when its work happened elsewhere (a child workflow)."""
        return self._saga.step(step, _nothing)

    @property
    def completed(self) -> list[str]:
        return list(self._saga.completed)

    @property
    def compensated(self) -> list[str]:
        return list(self._saga.compensated)

    def confirmed(self) -> None:
        progress = self._progress
        progress.status, progress.current_step = SagaStatus.CONFIRMED, None
        self.on_ended(SagaStatus.CONFIRMED, None)

    # -- handlers --------------------------------------------------------------

    @workflow.query(name="state")
    def state(self) -> P:
        return self._progress

    @workflow.update(name="cancel")
    async def cancel(self, request: CancelRequest) -> CancelAccepted:
        # A repeated cancel is accepted and changes nothing.
        if self._cancel_reason is None and not self._progress.compensating:
            self._cancel_reason = request.reason
            if self._steps is not None:
                self._steps.cancel()
        return self.cancel_accepted()

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        status = self._progress.status
        if status != SagaStatus.PENDING or self._past_no_return:
            raise ApplicationError(
                f"{self.describe()} can no longer be cancelled ({status})",
                type=self.not_cancellable_type,
            )

    # -- inside ----------------------------------------------------------------

    def _register_unseen_undos(self) -> None:
        """Undos of LOCAL steps not begun in this run: a lost task may have run them.

        Registered after (so run before) the others: such a step comes later
        in the plan than any begun here. An undo of a step that never ran
        fences it and finds nothing to undo.
        """
        if not self._local_steps():
            return
        registered = set(self._saga.pending_undos)
        for step in self.steps:
            undo = step.undo
            if step.runs is not Runs.LOCAL or undo is None or step.name in self._started:
                continue
            if undo.action not in registered:
                fields = (lambda s: lambda: self.undo_fields(s))(step)
                self._saga.register(*self.undo_of(undo, step.name, fields))

    async def _undo(self, reason: str) -> None:
        progress = self._progress
        progress.compensating, progress.failure_reason = True, reason
        self.on_compensating(reason)
        await self._saga.compensate()
        progress.status, progress.compensating = SagaStatus.CANCELLED, False
        progress.current_step = None
        self.on_ended(SagaStatus.CANCELLED, reason)

    def _temporal_cancel(self, err: BaseException) -> bool:
        """A Temporal cancel request, whether it hit an await or a step's retry."""
        return workflow.cancellation_reason() is not None and (
            isinstance(err, asyncio.CancelledError) or is_cancelled_exception(err)
        )

    def _cancelling(self) -> bool:
        if self._past_no_return:
            return False
        return self._cancel_reason is not None or workflow.cancellation_reason() is not None

    def _progressed(self) -> None:
        progress = self._progress
        progress.steps = list(self._saga.completed)
        if len(self._saga.compensated) > len(progress.compensations):
            self.on_undone(self._saga.compensated[-1])
        progress.compensations = list(self._saga.compensated)

    def _reason_for(self, err: FailureError | asyncio.CancelledError) -> str:
        # A cancel update wins over what the interrupted step then reported.
        if self._cancel_reason is not None:
            return self._cancel_reason
        if isinstance(err, asyncio.CancelledError) or self._temporal_cancel(err):
            return "workflow cancelled"
        cause = err.cause if isinstance(err, ActivityError) else err
        if isinstance(cause, ApplicationError):
            return cause.message
        return f"{getattr(err, 'activity_type', 'step')} failed: {cause or err}"


async def _nothing() -> None:
    """A step whose work was done elsewhere."""
