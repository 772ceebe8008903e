"""One saga step as one local transaction: idempotency key, business rows, outbox events.

`apply_once` is the only way activities write. Inside one PostgreSQL
transaction it claims the step's idempotency key, runs the business change,
inserts the outbox events and stores the result under the key. A repeat of the
key (an activity retry, a duplicate delivery) returns the stored result and
changes nothing. A business refusal raised by the change rolls everything back,
the key included, so nothing of a refused step remains.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import SessionFactory
from db.tables import service_tables

R = TypeVar("R", bound=BaseModel)

# Event ids derive from the step's key, so the same step always yields the same ids.
EVENT_NAMESPACE = uuid.UUID("5b0f8a0e-4a1c-4f5e-9a57-3d4f0c2b7e11")


@dataclass(frozen=True)
class StepContext:
    service: str
    idempotency_key: str
    correlation_id: str


@dataclass
class Step:
    """What a business change sees: the open session and an event collector."""

    session: AsyncSession
    context: StepContext
    events: list[dict[str, Any]] = field(default_factory=list)

    def record(
        self, aggregate_type: str, aggregate_id: str, event_type: str, payload: dict[str, Any]
    ) -> None:
        ordinal = len(self.events)
        key = f"{self.context.service}:{self.context.idempotency_key}:{event_type}:{ordinal}"
        self.events.append(
            {
                "event_id": str(uuid.uuid5(EVENT_NAMESPACE, key)),
                "aggregate_type": aggregate_type,
                "aggregate_id": aggregate_id,
                "event_type": event_type,
                "payload": payload,
                "headers": {
                    "correlation_id": self.context.correlation_id,
                    "idempotency_key": self.context.idempotency_key,
                },
            }
        )


async def apply_once(
    sessions: SessionFactory,
    context: StepContext,
    change: Callable[[Step], Awaitable[R]],
    result_type: type[R],
) -> R:
    tables = service_tables[context.service]
    idem = tables.idempotency
    async with sessions() as session, session.begin():
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
            return result_type.model_validate(stored)
        step = Step(session=session, context=context)
        result = await change(step)
        if step.events:
            await session.execute(tables.outbox.insert(), step.events)
        await session.execute(
            update(idem)
            .where(idem.c.key == context.idempotency_key)
            .values(result=result.model_dump(mode="json"))
        )
        return result
