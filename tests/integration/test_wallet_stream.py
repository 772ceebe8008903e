"""The event-sourced wallet: optimistic concurrency, projection, snapshots, time travel."""

from __future__ import annotations

import asyncio
import functools
from datetime import datetime

import pytest
from sqlalchemy import select, text

from db.tables import wallet_events, wallet_snapshots, wallets
from db.wallet_store import WalletStore
from domain import wallet
from tests import factories

pytestmark = pytest.mark.asyncio


def credit(state: wallet.WalletState, amount: int, key: str) -> list[wallet.WalletEvent]:
    return wallet.credit(state, amount, key)


async def projection(engine, customer_id: str) -> tuple[int, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(wallets.c.balance, wallets.c.version).where(
                    wallets.c.customer_id == customer_id
                )
            )
        ).one()
    return int(row.balance), int(row.version)


async def debit(engine, store: WalletStore, customer_id: str, amount: int, key: str) -> bool:
    key = f"{customer_id}:{key}"  # entry ids are unique across all wallets
    try:
        async with engine.begin() as conn:
            await store.change(
                conn, customer_id, lambda s: wallet.debit(s, amount, key, f"order-{key}")
            )
    except wallet.Overdraft:
        return False
    return True


async def test_a_debit_decided_on_a_stale_balance_is_decided_again_and_refused(engine):
    customer = await factories.insert_wallet(engine, balance=150)
    store = WalletStore()
    async with engine.begin() as first:
        await store.change(
            first, customer, lambda s: wallet.debit(s, 100, f"{customer}:a", "order-a")
        )
        # The second writer loads version 2 too, and waits on version 3 until we commit.
        second = asyncio.create_task(debit(engine, store, customer, 100, "b"))
        await factories.lock_waits(engine, 1)
        assert not second.done()
    assert await second is False  # decided again on 50: refused, not overdrawn
    assert store.conflicts == 1
    assert await projection(engine, customer) == (50, 3)


async def test_concurrent_debits_never_overdraw(engine):
    customer = await factories.insert_wallet(engine, balance=1000)
    store = WalletStore()

    won = await asyncio.gather(*(debit(engine, store, customer, 100, f"d{n}") for n in range(25)))

    assert won.count(True) == 10
    async with engine.connect() as conn:
        versions = list(
            await conn.scalars(
                select(wallet_events.c.version)
                .where(wallet_events.c.customer_id == customer)
                .order_by(wallet_events.c.version)
            )
        )
        rebuilt = await store.rebuild(conn, customer)
    assert versions == list(range(1, 13))  # opened, credited, ten debits: no gaps
    assert rebuilt.balance == 0
    assert await projection(engine, customer) == (0, 12)


async def test_the_projection_equals_a_rebuild_from_the_events(engine):
    customer = factories.customer()
    store = WalletStore()
    async with engine.begin() as conn:
        await store.change(conn, customer, lambda s: wallet.credit(s, 500, f"{customer}:c1"))
        await store.change(conn, customer, lambda s: wallet.debit(s, 120, f"{customer}:d1", "o1"))
        await store.change(
            conn, customer, lambda _: wallet.reverse_debit(120, f"{customer}:r1", "o1")
        )
        await store.change(conn, customer, lambda s: wallet.debit(s, 75, f"{customer}:d2", "o2"))
    async with engine.connect() as conn:
        rebuilt = await store.rebuild(conn, customer)
        # The old ledger reads on as a view over the stream.
        ledger = await conn.scalar(
            text("SELECT sum(amount) FROM payments.wallet_entries WHERE customer_id = :c"),
            {"c": customer},
        )

    assert (rebuilt.balance, rebuilt.version) == (425, 5) == await projection(engine, customer)
    assert int(ledger) == 425


async def test_a_snapshot_plus_later_events_equals_the_full_fold(engine):
    customer = factories.customer()
    store = WalletStore(snapshot_every=3)
    async with engine.begin() as conn:
        for n in range(1, 10):
            amount, key = n * 10, f"{customer}:c{n}"
            await store.change(conn, customer, functools.partial(credit, amount=amount, key=key))
    async with engine.connect() as conn:
        snaps = (
            await conn.execute(
                select(wallet_snapshots.c.version, wallet_snapshots.c.balance)
                .where(wallet_snapshots.c.customer_id == customer)
                .order_by(wallet_snapshots.c.version)
            )
        ).all()
        loaded = await store.load(conn, customer)
        rebuilt = await store.rebuild(conn, customer)
        after_last = await store.events(conn, customer, after_version=snaps[-1].version)

    # Opened at 1, then credits of 10..90: balance at version v is 10 * (1 + ... + (v - 1)).
    assert [(s.version, s.balance) for s in snaps] == [(3, 30), (6, 150), (9, 360)]
    assert len(after_last) == 1  # the load folds one event onto the snapshot
    assert loaded == rebuilt
    assert (loaded.version, loaded.balance) == (10, 450)


async def test_the_wallet_as_it_stood_at_a_past_moment(engine, api):
    customer = factories.customer()
    store = WalletStore()

    async def now() -> datetime:
        async with engine.connect() as conn:
            moment: datetime = await conn.scalar(text("SELECT clock_timestamp()"))
            return moment

    async with engine.begin() as conn:
        await store.change(conn, customer, lambda s: wallet.credit(s, 100, f"{customer}:t1"))
    after_credit = await now()
    async with engine.begin() as conn:
        await store.change(conn, customer, lambda s: wallet.debit(s, 30, f"{customer}:t2", "o"))
    after_debit = await now()
    async with engine.begin() as conn:
        await store.change(conn, customer, lambda s: wallet.credit(s, 50, f"{customer}:t3"))

    async with engine.connect() as conn:
        assert (await store.state_at(conn, customer, after_credit)).balance == 100
        assert (await store.state_at(conn, customer, after_debit)).balance == 70
    past = await api.get(f"/wallets/{customer}", params={"at": after_credit.isoformat()})
    assert past.status_code == 200
    assert past.json()["balance"] == 100
    assert past.json()["version"] == 2
    current = (await api.get(f"/wallets/{customer}")).json()
    assert (current["balance"], current["version"]) == (120, 4)

    naive = await api.get(f"/wallets/{customer}", params={"at": "2026-11-25T10:00:00"})
    assert naive.status_code == 422
    assert "at" in naive.text


async def test_an_event_appended_again_under_its_entry_id_changes_nothing(engine):
    customer = factories.customer()
    store = WalletStore()
    for _ in range(2):  # a retried step derives the same entry id
        async with engine.begin() as conn:
            await store.change(conn, customer, lambda s: wallet.credit(s, 40, f"{customer}:once"))

    assert await projection(engine, customer) == (40, 2)
