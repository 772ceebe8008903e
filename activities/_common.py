"""Small pieces every service's activities share."""

from __future__ import annotations

import uuid

from temporalio.exceptions import ApplicationError

from db.tables import service_tables
from db.unit_of_work import EVENT_NAMESPACE, StepContext
from domain.activities import StepInput
from domain.errors import ErrorType
from security.sealed import Sealer


def context(service: str, step: StepInput) -> StepContext:
    return StepContext(
        tables=service_tables[service],
        idempotency_key=step.idempotency_key,
        correlation_id=step.correlation_id,
    )


def stable_id(*parts: str) -> str:
    """An id that a retry of the same step derives again, instead of a fresh random one."""
    return str(uuid.uuid5(EVENT_NAMESPACE, ":".join(parts)))


def refusal(error: ErrorType, message: str, **details: object) -> ApplicationError:
    # non_retryable here as well as in the workflow's RetryPolicy: a refusal is
    # final whoever calls the activity.
    return ApplicationError(message, details or None, type=error.value, non_retryable=True)


def opened_token(sealer: Sealer, text: str, order_id: str) -> str:
    """The order's card token for the provider, opened only now (security.sealed).

    Text that does not open for this order never will: refused. A key this
    process lacks (KeyNotHeld) is raised as it is, to be retried where it is held.
    """
    try:
        return sealer.open(text, order_id)
    except ValueError as err:
        raise refusal(ErrorType.INVALID_ORDER, f"card token: {err}") from None
