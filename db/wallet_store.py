"""The wallet's event store: load by folding, append at the next version, project, snapshot.

Works inside the caller's transaction (a saga step's session, or an XA
branch's connection), so an event commits — or is prepared — together with
everything else the step writes.

Optimistic concurrency: a change is decided on the state as loaded (version
v) and appended as v+1 with `ON CONFLICT DO NOTHING`. If another writer took
v+1 first, PostgreSQL waits for it to finish and then inserts nothing; the
change is decided again on the new state. Nothing is locked while deciding,
and no writer can overdraw: a debit decided on a stale balance never lands.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from db.tables import wallet_events, wallet_snapshots, wallets
from domain.wallet import WalletEvent, WalletEventType, WalletState, credit, fold

Db = AsyncConnection | AsyncSession
Decide = Callable[[WalletState], Sequence[WalletEvent]]

DEFAULT_CURRENCY = "EUR"
_ENTRY_NAMESPACE = uuid.UUID("0b9c4f1e-2a7d-4e55-8f3a-6c1d9e2b7a44")
# Writers of one wallet that keep losing the race: far beyond any real contention.
_MAX_ATTEMPTS = 50


class VersionConflict(RuntimeError):
    """Another writer appended first, more times than any real contention explains."""


def entry_uuid(entry_id: str) -> str:
    """The stored id of an event: the same step's key always maps to the same id."""
    return str(uuid.uuid5(_ENTRY_NAMESPACE, entry_id))


class WalletStore:
    def __init__(self, snapshot_every: int = 50) -> None:
        self.snapshot_every = snapshot_every
        self.conflicts = 0  # appends lost to another writer, and so decided again

    async def load(self, db: Db, customer_id: str) -> WalletState:
        """The latest snapshot, and the events after it folded in."""
        state = await self._snapshot(db, customer_id)
        return fold(state, await self.events(db, customer_id, after_version=state.version))

    async def rebuild(self, db: Db, customer_id: str) -> WalletState:
        """Every event from the first, no snapshot: what the projection must equal."""
        return fold(WalletState(customer_id), await self.events(db, customer_id))

    async def state_at(self, db: Db, customer_id: str, at: datetime) -> WalletState:
        """The wallet as it stood at `at`: the events that had occurred by then.

        Folded from the latest snapshot whose own event had occurred by `at`,
        so a read replays at most the events between two snapshots, however
        long the stream. Event times grow with versions (each event is
        appended after the one before it committed), so such a snapshot holds
        only events that had occurred by `at`, and none at or after the next
        snapshot had.
        """
        state = await self._snapshot(db, customer_id, until=at)
        before = await db.scalar(
            select(func.min(wallet_snapshots.c.version)).where(
                wallet_snapshots.c.customer_id == customer_id,
                wallet_snapshots.c.version > state.version,
            )
        )
        events = await self.events(
            db, customer_id, after_version=state.version, until=at, before_version=before
        )
        return fold(state, events)

    async def _snapshot(
        self, db: Db, customer_id: str, until: datetime | None = None
    ) -> WalletState:
        """The latest snapshot (of those whose event had occurred by `until`), or the empty
        wallet."""
        snapshots = wallet_snapshots
        query = (
            select(snapshots.c.version, snapshots.c.balance)
            .where(snapshots.c.customer_id == customer_id)
            .order_by(snapshots.c.version.desc())
            .limit(1)
        )
        if until is not None:
            query = query.join(
                wallet_events,
                (wallet_events.c.customer_id == snapshots.c.customer_id)
                & (wallet_events.c.version == snapshots.c.version),
            ).where(wallet_events.c.occurred_at <= until)
        snap = (await db.execute(query)).first()
        if snap is None:
            return WalletState(customer_id)
        return WalletState(customer_id, int(snap.version), int(snap.balance))

    async def events(
        self,
        db: Db,
        customer_id: str,
        *,
        after_version: int = 0,
        until: datetime | None = None,
        before_version: int | None = None,
    ) -> list[WalletEvent]:
        query = (
            select(wallet_events)
            .where(
                wallet_events.c.customer_id == customer_id,
                wallet_events.c.version > after_version,
            )
            .order_by(wallet_events.c.version)
        )
        if until is not None:
            query = query.where(wallet_events.c.occurred_at <= until)
        if before_version is not None:
            query = query.where(wallet_events.c.version < before_version)
        return [_event(row) for row in await db.execute(query)]

    async def open_with(self, db: Db, customer_id: str, balance: int) -> WalletState:
        """A wallet holding `balance`, as a first top-up leaves it (seeds, tests, benchmarks)."""
        return await self.change(
            db, customer_id, lambda state: credit(state, balance, f"opening:{customer_id}")
        )

    async def change(self, db: Db, customer_id: str, decide: Decide) -> WalletState:
        """Decide on the current state and append; decided again if another writer won.

        `decide` may raise (an overdraft) to refuse; an event whose entry id is
        already stored was applied before, and the wallet is returned as it is."""
        for _ in range(_MAX_ATTEMPTS):
            state = await self.load(db, customer_id)
            events = list(decide(state))
            if await self._already_applied(db, events):
                return state
            appended = await self._append(db, state, events)
            if appended is not None:
                return appended
            self.conflicts += 1
        raise VersionConflict(f"wallet {customer_id}: lost {_MAX_ATTEMPTS} races in a row")

    async def _already_applied(self, db: Db, events: list[WalletEvent]) -> bool:
        keyed = [entry_uuid(e.entry_id) for e in events if e.type is not WalletEventType.OPENED]
        if not keyed:
            return False
        found = await db.scalar(
            select(wallet_events.c.version).where(wallet_events.c.entry_id.in_(keyed)).limit(1)
        )
        return found is not None

    async def _append(
        self, db: Db, state: WalletState, events: list[WalletEvent]
    ) -> WalletState | None:
        """None when another writer took the next version first."""
        for event in events:
            version = state.version + 1
            taken = await db.execute(
                insert(wallet_events)
                .values(
                    customer_id=state.customer_id,
                    version=version,
                    event_type=event.type.value,
                    amount=event.amount,
                    order_id=event.order_id,
                    entry_id=entry_uuid(event.entry_id),
                )
                .on_conflict_do_nothing(index_elements=["customer_id", "version"])
                .returning(wallet_events.c.version)
            )
            if taken.first() is None:
                # Only the first can lose: holding version v, nobody else reaches v+1.
                return None
            state = WalletState(state.customer_id, version, state.balance + event.signed)
            if version % self.snapshot_every == 0:
                await db.execute(
                    insert(wallet_snapshots).values(
                        customer_id=state.customer_id, version=version, balance=state.balance
                    )
                )
        await self._project(db, state)
        return state

    async def _project(self, db: Db, state: WalletState) -> None:
        """The balance projection, in the same transaction as the events it reflects."""
        values: dict[str, Any] = {
            "balance": state.balance,
            "version": state.version,
            "updated_at": func.now(),
        }
        await db.execute(
            insert(wallets)
            .values(customer_id=state.customer_id, currency=DEFAULT_CURRENCY, **values)
            .on_conflict_do_update(index_elements=[wallets.c.customer_id], set_=values)
        )


def _event(row: Any) -> WalletEvent:
    return WalletEvent(
        type=WalletEventType(row.event_type),
        amount=int(row.amount),
        entry_id=str(row.entry_id),
        order_id=row.order_id,
        version=int(row.version),
        occurred_at=row.occurred_at,
    )
