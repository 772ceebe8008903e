"""A saga's progress as the saga kit (workflows.saga) reports it: to queries, to callers, in its
result. Generic: nothing here knows what a saga does; a saga extends SagaProgress with its own."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class SagaStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"  # every step done: the point of no return was passed
    CANCELLED = "CANCELLED"  # undone: every step that happened was compensated


class Runs(StrEnum):
    """Where a step runs; what it costs follows from it."""

    # A short transaction in one service's own database: a local activity on the
    # workflow's worker, bulkheaded by that service's pool and concurrency limit.
    LOCAL = "local"
    # A call to a system outside ours (a payment provider): an activity on a task
    # queue of its own, with its own worker slots, HTTP pool and breaker.
    REMOTE = "remote"


# A saga's workflow task timeout. A workflow task running local steps stays
# open while they run, and the worker heartbeats it at 80 % of this: an update
# or query sent meanwhile gets in then. The default (10 s) would keep a cancel
# out for 8 s; 5 s lets one in within the API's 5 s wait, and also retries a
# task whose worker died sooner.
WORKFLOW_TASK_TIMEOUT = timedelta(seconds=5)


class SagaProgress(BaseModel):
    # A saga's own model narrows `status` (an order's OrderStatus): what the kit
    # assigns is validated into it.
    model_config = ConfigDict(validate_assignment=True)

    status: str = SagaStatus.PENDING
    current_step: str | None = None
    steps: list[str] = Field(default_factory=list)
    compensations: list[str] = Field(default_factory=list)
    failure_reason: str | None = None
    compensating: bool = False


class CancelRequest(BaseModel):
    reason: str = "cancelled by request"


class CancelAccepted(BaseModel):
    accepted: bool = True
