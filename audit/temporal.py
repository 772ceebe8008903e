"""Sagas that stopped moving, as Temporal sees them.

An open OrderSaga, ReturnSaga or TwoPhaseCommit whose newest history event is older than
the grace period has made no progress: its worker is gone, or an activity is
failing past every deadline. Each is reported with what it waits on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

from temporalio.api.common.v1 import WorkflowExecution as ProtoExecution
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryReverseRequest
from temporalio.client import Client, WorkflowExecution

from audit.checks import Scope, Violation

SAGA_TYPES = ("OrderSaga", "ReturnSaga", "TwoPhaseCommit")
_TYPES = ", ".join(f"'{t}'" for t in SAGA_TYPES)
_QUERY = f"WorkflowType IN ({_TYPES}) AND ExecutionStatus = 'Running' AND StartTime < '{{cutoff}}'"


async def stuck_sagas(client: Client, scope: Scope) -> list[Violation]:
    found: list[Violation] = []
    async for execution, last in silent_sagas(client, scope):
        detail = f"{execution.workflow_type} open since {execution.start_time:%Y-%m-%d %H:%M:%S}"
        detail += f", last event {last:%Y-%m-%d %H:%M:%S}" if last else ", no events"
        if pending := await _pending(client, execution):
            detail += f"; waits on {pending}"
        found.append(Violation("stuck-saga", execution.id, detail))
    return found


async def silent_sagas(
    client: Client, scope: Scope
) -> AsyncIterator[tuple[WorkflowExecution, datetime | None]]:
    """Each open saga whose newest history event (when it has one) is older than the grace."""
    now = datetime.now(UTC)
    cutoff = (now - scope.grace).isoformat()
    async for execution in client.list_workflows(_QUERY.format(cutoff=cutoff)):
        if scope.since is not None and execution.start_time < scope.since:
            continue
        last = await _last_event_time(client, execution)
        if last is not None and now - last < scope.grace:
            continue  # slow but moving
        yield execution, last


async def _last_event_time(client: Client, execution: WorkflowExecution) -> datetime | None:
    reply = await client.workflow_service.get_workflow_execution_history_reverse(
        GetWorkflowExecutionHistoryReverseRequest(
            namespace=client.namespace,
            execution=ProtoExecution(workflow_id=execution.id, run_id=execution.run_id),
            maximum_page_size=1,
        )
    )
    if not reply.history.events:
        return None
    return reply.history.events[0].event_time.ToDatetime(tzinfo=UTC)


async def _pending(client: Client, execution: WorkflowExecution) -> str:
    described = await client.get_workflow_handle(execution.id, run_id=execution.run_id).describe()
    waits = []
    for act in described.raw_description.pending_activities:
        state = PendingActivityState.Name(act.state).removeprefix("PENDING_ACTIVITY_STATE_")
        failure = act.last_failure.message[:120] if act.HasField("last_failure") else ""
        waits.append(
            f"{act.activity_type.name} {state.lower()} attempt {act.attempt}"
            + (f" ({failure})" if failure else "")
        )
    return "; ".join(waits)
