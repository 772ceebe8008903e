"""One saga step as one local transaction: idempotency key, business rows, outbox events.

`apply_once` is the only way activities write. Inside one PostgreSQL
transaction it claims the step's idempotency key, runs the business change,
inserts the outbox events and stores the result under the key. A repeat of the
key (an activity retry, a duplicate delivery) returns the stored result and
changes nothing. A business refusal raised by the change rolls everything back,
the key included, so nothing of a refused step remains.

The step's context carries the service's tables (db.kit_tables.ServiceTables):
this module serves whatever service it is handed, and knows none by name.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from temporalio.exceptions import ApplicationError

from db.engine import SessionFactory
from db.kit_tables import ServiceTables
from db.relay_ring import ring_when_committed
from domain.errors import ErrorType
from observability.tracing import inject as inject_trace

R = TypeVar("R", bound=BaseModel)
log = logging.getLogger(__name__)

# Event ids derive from the step's key, so the same step always yields the same ids.
EVENT_NAMESPACE = uuid.UUID("5b0f8a0e-4a1c-4f5e-9a57-3d4f0c2b7e11")


@dataclass(frozen=True)
class StepContext:
    tables: ServiceTables  # the service's outbox and idempotency keys
    idempotency_key: str
    correlation_id: str

    @property
    def service(self) -> str:
        return self.tables.service


@dataclass
class Step:
    """What a business change sees: the open session and an event collector."""

    session: AsyncSession
    context: StepContext
    events: list[dict[str, Any]] = field(default_factory=list)

    def record(
        self, aggregate_type: str, aggregate_id: str, event_type: str, payload: dict[str, Any]
    ) -> None:
        self.events.append(
            event_row(
                self.context, aggregate_type, aggregate_id, event_type, payload, len(self.events)
            )
        )


def event_row(
    context: StepContext,
    aggregate_type: str,
    aggregate_id: str,
    event_type: str,
    payload: dict[str, Any],
    ordinal: int = 0,
) -> dict[str, Any]:
    """An outbox row whose id the same step derives again on every attempt."""
    key = f"{context.service}:{context.idempotency_key}:{event_type}:{ordinal}"
    headers = {
        "correlation_id": context.correlation_id,
        "idempotency_key": context.idempotency_key,
    }
    # The activity's trace continues through the relay to the consumers.
    inject_trace(headers)
    headers.update(_carried.get() or {})
    return {
        "event_id": str(uuid.uuid5(EVENT_NAMESPACE, key)),
        "aggregate_type": aggregate_type,
        "aggregate_id": aggregate_id,
        "event_type": event_type,
        "payload": payload,
        "headers": headers,
    }


# Headers a caller adds to every event written in its context, like the trace
# above: how a choreographed order's facts ride along (domain.choreography)
# without each activity knowing about them.
_carried: ContextVar[Mapping[str, Any] | None] = ContextVar("carried_headers", default=None)


@contextlib.contextmanager
def carried_headers(headers: Mapping[str, Any]) -> Iterator[None]:
    token = _carried.set(headers)
    try:
        yield
    finally:
        _carried.reset(token)


# Stored under a forward step's key by its undo: the step must never apply after.
FENCED: dict[str, Any] = {"__fenced__": True}


class StepFenced(ApplicationError):
    def __init__(self, key: str) -> None:
        super().__init__(
            f"step {key} was already undone; it will not apply",
            type=ErrorType.STEP_FENCED,
            non_retryable=True,
        )


async def apply_once(
    sessions: SessionFactory,
    context: StepContext,
    change: Callable[[Step], Awaitable[R]],
    result_type: type[R],
    fence: str | None = None,
) -> R:
    """Apply `change` once under the context's key.

    `fence` is for undos: the key of the step being undone. Claiming it first
    waits for any attempt of that step still in flight (it holds the key's row
    until it commits or rolls back), so the undo sees its effect; and it stops
    any later attempt of the step from applying at all.
    """
    idem = context.tables.idempotency
    async with sessions() as session:
        async with session.begin():
            result, wrote = await _apply(session, idem, context, change, result_type, fence)
        if wrote:
            ring_when_committed(sessions, context.service)
        return result


async def _apply(
    session: AsyncSession,
    idem: Table,
    context: StepContext,
    change: Callable[[Step], Awaitable[R]],
    result_type: type[R],
    fence: str | None,
) -> tuple[R, bool]:
    """The step's transaction; says whether it wrote outbox rows to announce."""
    if fence is not None:
        await session.execute(
            insert(idem)
            .values(key=fence, result=FENCED)
            .on_conflict_do_nothing(index_elements=[idem.c.key])
        )
    # Inserting the key first serialises concurrent attempts of one step: the
    # second blocks on the key until the first commits, then sees its result.
    claimed = await session.execute(
        insert(idem)
        .values(key=context.idempotency_key)
        .on_conflict_do_nothing(index_elements=[idem.c.key])
        .returning(idem.c.key)
    )
    if claimed.first() is None:
        stored = await session.scalar(
            select(idem.c.result).where(idem.c.key == context.idempotency_key)
        )
        if stored == FENCED:
            raise StepFenced(context.idempotency_key)
        return result_type.model_validate(stored), False
    step = Step(session=session, context=context)
    result = await change(step)
    await insert_events(session, context.tables.outbox, step.events)
    await session.execute(
        update(idem)
        .where(idem.c.key == context.idempotency_key)
        .values(result=result.model_dump(mode="json"))
    )
    return result, bool(step.events)


async def insert_events(
    db: AsyncSession | AsyncConnection,
    outbox: Table,
    events: list[dict[str, Any]],
) -> None:
    """Write `events` into `outbox` in the caller's transaction, in commit order per aggregate.

    The transaction-scoped lock on each aggregate makes writers of one
    aggregate take turns from here to their commit, so a later row of an
    aggregate is never inserted while an earlier one is still uncommitted:
    insert order is commit order, and the relay may publish by `seq`.

    Nothing here wakes the relay: the caller rings it after its commit
    (`ring_relay`), because a NOTIFY in this transaction would serialise its
    commit behind every other notifying one (and PostgreSQL refuses NOTIFY in
    a transaction that will be PREPAREd).
    """
    if not events:
        return
    for aggregate in sorted({f"{e['aggregate_type']}:{e['aggregate_id']}" for e in events}):
        await db.execute(select(func.pg_advisory_xact_lock(func.hashtext(aggregate))))
    await db.execute(outbox.insert(), events)
