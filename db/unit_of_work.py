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

import asyncio
import contextlib
import logging
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from temporalio.exceptions import ApplicationError

from db.engine import SessionFactory
from db.kit_tables import ServiceTables
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
            _ring_when_committed(sessions, context.service)
        return result


def engine_of(sessions: SessionFactory) -> AsyncEngine:
    """The engine a session factory is bound to (where a ring goes out)."""
    bind = sessions.kw.get("bind")
    assert isinstance(bind, AsyncEngine), "this session factory is bound to an engine"
    return bind


# Services whose outbox a step wrote inside a transaction that a caller further
# up owns (a consumer's inbox transaction, the step in a savepoint of it): their
# rings wait for that transaction's commit.
_ring_after: ContextVar[set[str] | None] = ContextVar("ring_after", default=None)


@contextlib.asynccontextmanager
async def ringing_after_commit(engine: AsyncEngine) -> AsyncIterator[None]:
    """Around a transaction that steps join (`db.engine.sessions_on`): ring the
    relay for what they wrote once it has committed, and not if it fails."""
    services: set[str] = set()
    token = _ring_after.set(services)
    try:
        yield
    finally:
        _ring_after.reset(token)
    for service in sorted(services):
        ring_relay(engine, service)


def _ring_when_committed(sessions: SessionFactory, service: str) -> None:
    if isinstance(sessions.kw.get("bind"), AsyncEngine):
        ring_relay(engine_of(sessions), service)  # the step's own transaction: committed
        return
    pending = _ring_after.get()
    if pending is None:
        log.warning(
            "a step wrote %s's outbox in a transaction it does not own and nothing rings "
            "the relay after its commit (db.unit_of_work.ringing_after_commit): the poll "
            "will publish it",
            service,
        )
        return
    pending.add(service)


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


OUTBOX_CHANNEL = "outbox"

# The wake-up, sent after the step's commit in a transaction of its own: one
# that notifies takes a database-wide lock from its commit until the WAL flush,
# so a NOTIFY inside the step queued every step's commit behind every other's.
# This one commits without waiting for the flush (a lost wake-up is only a poll
# later), so it holds that lock for microseconds and no step waits on it.
_RING = select(
    func.set_config("synchronous_commit", "off", True),
    func.pg_notify(OUTBOX_CHANNEL, bindparam("service")),
)


class _Doorbell:
    """One engine's wake-ups, coalesced: a commit asks for a ring; while one is
    on its way, the asks behind it share the one sent after it, so a ring always
    follows every commit, and a busy process sends one per round trip at most."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._asked: set[str] = set()
        self._ringing: asyncio.Task[None] | None = None

    def ask(self, service: str) -> None:
        self._asked.add(service)
        if self._ringing is None or self._ringing.done():
            self._ringing = asyncio.get_running_loop().create_task(self._ring())

    async def _ring(self) -> None:
        while self._asked:
            asked, self._asked = self._asked, set()
            for service in sorted(asked):
                await self._send(service)

    async def _send(self, service: str) -> None:
        try:
            async with self._engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(_RING, {"service": service})
        except Exception as err:  # PostgreSQL away: the poll finds the rows
            log.warning("could not wake the relay for %s: %s", service, err)

    async def rung(self) -> None:
        """Wait until every ring asked for so far is sent (tests, shutdown)."""
        while self._ringing is not None and not self._ringing.done():
            await asyncio.shield(self._ringing)


_doorbells: weakref.WeakKeyDictionary[AsyncEngine, _Doorbell] = weakref.WeakKeyDictionary()


def ring_relay(engine: AsyncEngine, service: str) -> None:
    """Wake a hybrid relay for `service`'s outbox, now that rows in it are committed.

    Returns at once; the ring goes out in the background. Best effort: the
    step's effect is committed whatever happens to it, and the relay's poll
    publishes what no wake-up announced."""
    bell = _doorbells.get(engine)
    if bell is None:
        bell = _doorbells[engine] = _Doorbell(engine)
    bell.ask(service)


async def rung(engine: AsyncEngine) -> None:
    """Wait until every ring asked for on `engine` so far is sent (tests, shutdown)."""
    bell = _doorbells.get(engine)
    if bell is not None:
        await bell.rung()


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
