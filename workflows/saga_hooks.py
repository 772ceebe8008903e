"""What a saga overrides, and what the saga kit does where it does not.

The kit (workflows.saga) asks these for what only a saga knows: how it is
named in a failure message, what every step's input carries, which task queue
a REMOTE step runs on, what an undo's input carries. The `on_*` hooks are told
what happened, for what the Temporal UI and the search attributes show. The
defaults set the workflow's current details and nothing else.

Only `temporalio`, workflows.compensation, workflows.steps and the progress
model (domain.saga) are imported here, as in the rest of the kit.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.saga import CancelAccepted, SagaProgress, SagaStatus
    from workflows.compensation import Compensations
    from workflows.steps import Step

P = TypeVar("P", bound=SagaProgress)


class SagaHooks(Generic[P]):
    """The defaults of every hook; `Saga` derives from it, and a saga overrides them."""

    # The compensation stack the hooks describe (Saga.__init__ builds it).
    _saga: Compensations

    def describe(self) -> str:
        """The saga in a failure message."""
        return f"saga {workflow.info().workflow_id}"

    def command_fields(self) -> dict[str, Any]:
        """Fields every step's input carries besides its keys (e.g. the order id)."""
        return {}

    def queue_for(self, action: str) -> str:
        """The task queue of a REMOTE step's activity."""
        return workflow.info().task_queue

    def undo_fields(self, step: Step) -> dict[str, Any]:
        """What `step`'s undo input carries besides its keys, built when it runs."""
        return {}

    def cancel_accepted(self) -> CancelAccepted:
        return CancelAccepted()

    def on_started(self) -> None:
        """The saga began (search attributes, counters)."""

    def on_step(self, action: str, summary: str) -> None:
        workflow.set_current_details(f"**{action}**: {summary}")

    def on_compensating(self, reason: str) -> None:
        workflow.set_current_details(
            f"Compensating: {reason}\n\nUndoing: {', '.join(self._saga.pending_undos)}"
        )

    def on_undone(self, undo: str) -> None:
        """An undo reversed something."""

    def on_compensated(self, reason: str) -> None:
        """The saga ended undone: `reason` is the refusal's type, "cancelled" or "refused"."""

    def on_ended(self, status: SagaStatus, reason: str | None) -> None:
        ended = "confirmed" if status is SagaStatus.CONFIRMED else f"cancelled: {reason}"
        workflow.set_current_details(f"{self.describe().capitalize()} {ended}")
