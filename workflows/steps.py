"""A saga's steps: how each is declared (`Step`, `UndoStep`) and where it runs.

`run_step` runs a LOCAL step as a local activity on this worker and a REMOTE
one on its task queue; the saga kit (workflows.saga) calls it for every step
and undo, and the 2PC coordinator for its phases. Deterministic: only
`temporalio` and the shared step vocabulary (domain.saga) are imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from domain.saga import Runs

R = TypeVar("R")

STEP_TIMEOUT = timedelta(seconds=30)
# Transient faults back off exponentially, bounded so a dead dependency ends in
# compensation within minutes; a saga adds its refusal types (`step_retry`).
STEP_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=20),
    maximum_attempts=10,
)
# Added while sagas were running: before it every step was a regular activity
# on its bulkhead's task queue. Sagas that began so replay and finish so (the
# first step asks, so a saga never mixes the two); new ones run LOCAL steps as
# local activities.
LOCAL_STEPS = "local-steps"
# A local step's retries are the worker's, in memory, while its workflow task
# stays open; a worker asked to stop waits for them. A backoff longer than
# this is a durable timer instead: the task ends, a stopping or dying worker
# neither holds nor loses the wait, and whichever worker is there retries.
LOCAL_RETRY_THRESHOLD = timedelta(seconds=1)


@dataclass(frozen=True)
class UndoStep:
    """How a step is undone: an activity that fences the step off and reverses it."""

    action: str
    result: type[Any]
    # The undo's input; built with the undo's own key and `fences`, the step's key.
    command: type[Any] | None = None
    runs: Runs = Runs.LOCAL


@dataclass(frozen=True)
class Step:
    """One step of a saga: its name (with the workflow id, its idempotency key,
    so never rename one), the activity it runs, its undo, and where it runs."""

    name: str
    action: str
    result: type[Any]
    undo: UndoStep | None = None
    runs: Runs = Runs.LOCAL
    retry: RetryPolicy | None = None  # None: the saga's step_retry
    deadline: timedelta | None = None  # across all attempts


async def run_step(
    action: str,
    arg: Any,
    result: type[R],
    summary: str,
    *,
    local: bool,
    task_queue: str,
    **options: Any,
) -> R:
    """`action` as a local activity on this worker, or else on `task_queue`.

    `local` is the caller's `runs is Runs.LOCAL and workflow.patched(LOCAL_STEPS)`,
    in that order: the patch is asked only of a local step.
    """
    if local:
        ran: R = await workflow.execute_local_activity(
            action,
            arg,
            result_type=result,
            summary=summary,
            local_retry_threshold=LOCAL_RETRY_THRESHOLD,
            **options,
        )
        return ran
    scheduled: R = await workflow.execute_activity(
        action, arg, result_type=result, task_queue=task_queue, summary=summary, **options
    )
    return scheduled
