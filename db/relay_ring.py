"""Waking the relay after a commit, without serialising commits.

A step's transaction sends no NOTIFY: PostgreSQL takes one database-wide lock
at the commit of every notifying transaction and holds it through the WAL
flush, so a NOTIFY in each step queued every step's commit behind the others'
(bench.notify_cost). The step's process rings instead, once the rows are
committed: `ring_relay` (coalesced per engine, in the background), or, for
steps that join a transaction a caller owns, `ringing_after_commit` around it.
A ring is best effort: the relay's poll publishes what none announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator
from contextvars import ContextVar

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import SessionFactory

log = logging.getLogger(__name__)

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
        # Weakly: the registry below is keyed weakly by the engine, and a value
        # holding its key strongly would keep every engine that ever rang alive.
        self._engine = weakref.ref(engine)
        self._asked: set[str] = set()
        self._ringing: asyncio.Task[None] | None = None

    def ask(self, service: str) -> None:
        self._asked.add(service)
        loop = asyncio.get_running_loop()
        ringing = self._ringing
        # A task left on a loop that has ended would never finish: start afresh.
        if ringing is None or ringing.done() or ringing.get_loop() is not loop:
            self._ringing = loop.create_task(self._ring())

    async def _ring(self) -> None:
        while self._asked:
            asked, self._asked = self._asked, set()
            for service in sorted(asked):
                await self._send(service)

    async def _send(self, service: str) -> None:
        engine = self._engine()
        if engine is None:  # disposed of and gone: the poll finds the rows
            return
        try:
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(_RING, {"service": service})
        except Exception as err:  # PostgreSQL away: the poll finds the rows
            log.warning("could not wake the relay for %s: %s", service, err)

    async def rung(self) -> None:
        """Wait until every ring asked for so far is sent (tests, shutdown)."""
        loop = asyncio.get_running_loop()
        while (
            self._ringing is not None
            and not self._ringing.done()
            and self._ringing.get_loop() is loop
        ):
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


def ring_when_committed(sessions: SessionFactory, service: str) -> None:
    if isinstance(sessions.kw.get("bind"), AsyncEngine):
        ring_relay(engine_of(sessions), service)  # the step's own transaction: committed
        return
    pending = _ring_after.get()
    if pending is None:
        log.warning(
            "a step wrote %s's outbox in a transaction it does not own and nothing rings "
            "the relay after its commit (db.relay_ring.ringing_after_commit): the poll "
            "will publish it",
            service,
        )
        return
    pending.add(service)


async def close_engine(engine: AsyncEngine) -> None:
    """A process's last word on an engine: send the rings still owed, then close
    the pool (disposing of it first would drop a ring for committed rows)."""
    await rung(engine)
    await engine.dispose()
