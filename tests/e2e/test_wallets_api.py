"""Store credit over HTTP: wallets, their top-ups, and orders paid partly from them."""

from __future__ import annotations

import asyncio
import functools
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from db.tables import wallet_events
from db.wallet_store import WalletStore
from domain import wallet
from tests import factories
from tests.e2e.test_api import final_order, order_body
from tests.statements import executed, reading_only, rows_returned

pytestmark = pytest.mark.asyncio


async def test_customer_without_a_wallet_has_zero_credit(api):
    customer_id = factories.customer()

    response = await api.get(f"/wallets/{customer_id}")

    assert response.status_code == 200
    assert response.json() == {
        "customer_id": customer_id,
        "balance": 0,
        "currency": "EUR",
        "version": 0,
        "as_of": None,
    }


async def test_wallet_reads_its_balance(api, engine):
    customer_id = await factories.insert_wallet(engine, balance=1234)

    wallet = (await api.get(f"/wallets/{customer_id}")).json()

    # Opened, then credited: the stream's version 2.
    assert wallet == {
        "customer_id": customer_id,
        "balance": 1234,
        "currency": "EUR",
        "version": 2,
        "as_of": None,
    }


async def test_top_up_without_a_key_credits_every_time(api, engine):
    customer_id = factories.customer()

    first = await api.post(f"/wallets/{customer_id}/credits", json={"amount": 500})
    second = await api.post(f"/wallets/{customer_id}/credits", json={"amount": 500})

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json() == {
        "customer_id": customer_id,
        "amount": 500,
        "balance": 500,
        "currency": "EUR",
    }
    assert second.json()["balance"] == 1000
    assert await factories.balance_of(engine, customer_id) == 1000


async def test_top_up_replayed_with_its_key_answers_the_same_and_credits_once(api, engine):
    customer_id = await factories.insert_wallet(engine, balance=100)
    headers = {"Idempotency-Key": f"key-{uuid.uuid4()}"}
    url = f"/wallets/{customer_id}/credits"

    first = await api.post(url, json={"amount": 250}, headers=headers)
    replay = await api.post(url, json={"amount": 250}, headers=headers)

    assert first.status_code == 201, first.text
    assert replay.status_code == 200, replay.text
    assert (
        replay.json()
        == first.json()
        == {
            "customer_id": customer_id,
            "amount": 250,
            "balance": 350,
            "currency": "EUR",
        }
    )
    assert await factories.balance_of(engine, customer_id) == 350


async def test_top_up_key_reused_with_another_amount_is_a_conflict_and_changes_nothing(api, engine):
    customer_id = factories.customer()
    headers = {"Idempotency-Key": f"key-{uuid.uuid4()}"}
    url = f"/wallets/{customer_id}/credits"
    first = await api.post(url, json={"amount": 300}, headers=headers)

    reused = await api.post(url, json={"amount": 301}, headers=headers)

    assert first.status_code == 201
    assert reused.status_code == 409
    assert reused.headers["content-type"] == "application/problem+json"
    assert "Idempotency-Key" in reused.json()["detail"]
    assert await factories.balance_of(engine, customer_id) == 300


async def test_same_top_up_key_ten_times_at_once_credits_once_and_creates_once(api, engine):
    customer_id = factories.customer()
    headers = {"Idempotency-Key": f"key-{uuid.uuid4()}"}

    responses = await asyncio.gather(
        *(
            api.post(f"/wallets/{customer_id}/credits", json={"amount": 40}, headers=headers)
            for _ in range(10)
        )
    )

    codes = [r.status_code for r in responses]
    assert sorted(codes) == [200] * 9 + [201], [r.text for r in responses]
    assert {r.json()["balance"] for r in responses} == {40}
    assert await factories.balance_of(engine, customer_id) == 40


@pytest.mark.parametrize(
    ("amount", "field"),
    [(0, "amount"), (10_000_001, "amount"), (-5, "amount"), ("ten", "amount"), (None, "amount")],
)
async def test_bad_top_up_is_refused_naming_the_field(api, engine, amount, field):
    customer_id = factories.customer()

    response = await api.post(f"/wallets/{customer_id}/credits", json={"amount": amount})

    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert (await api.get(f"/wallets/{customer_id}")).json()["balance"] == 0


@pytest.mark.parametrize("customer_id", ["cust%00x", "cust%0Ax", "x" * 129])
async def test_impossible_customer_id_is_422_not_a_crash(api, customer_id):
    read = await api.get(f"/wallets/{customer_id}")
    top_up = await api.post(f"/wallets/{customer_id}/credits", json={"amount": 1})

    assert (read.status_code, top_up.status_code) == (422, 422)
    assert read.json()["errors"][0]["field"] == "path.customer_id"


async def test_order_paid_partly_with_store_credit_commits_all_three_by_two_phase_commit(
    api, product, engine
):
    sku = await product(stock=10, price=1500)
    customer_id = await factories.insert_wallet(engine, balance=5000)
    body = order_body(sku, 2, customer_id=customer_id, store_credit=1200)

    response = await api.post("/orders", json=body)

    assert response.status_code == 202, response.text
    order = await final_order(api, response.json()["order_id"])
    assert order["status"] == "CONFIRMED", order
    assert order["total"] == 3000
    # Acknowledged in the order the participants answered, which varies.
    acknowledged = sorted(order["two_phase"].pop("acknowledged"))
    assert acknowledged == ["card", "stock", "store_credit"]
    assert order["two_phase"] == {
        "tx_id": order["order_id"],
        "decision": "COMMIT",
        "votes": {"stock": "YES", "store_credit": "YES", "card": "YES"},
        "phase": "done",
    }
    # Read-your-writes: the balance read right after the commit shows the debit.
    assert (await api.get(f"/wallets/{customer_id}")).json()["balance"] == 3800
    assert await factories.stock_of(engine, sku) == 8
    hold = await factories.hold_of(engine, order["order_id"])
    assert (hold.amount, hold.status) == (1800, "CAPTURED")


async def test_order_paid_wholly_with_store_credit_needs_no_payment_token(api, product, engine):
    sku = await product(price=800)
    customer_id = await factories.insert_wallet(engine, balance=800)
    body = order_body(sku, 1, customer_id=customer_id, store_credit=800)
    del body["payment_token"]

    response = await api.post("/orders", json=body)

    assert response.status_code == 202, response.text
    order = await final_order(api, response.json()["order_id"])
    assert order["status"] == "CONFIRMED", order
    assert order["two_phase"]["decision"] == "COMMIT"
    assert order["two_phase"]["votes"] == {"stock": "YES", "store_credit": "YES"}
    assert await factories.balance_of(engine, customer_id) == 0


async def test_order_with_more_store_credit_than_the_wallet_holds_aborts_and_changes_nothing(
    api, product, engine
):
    sku = await product(stock=10, price=1000)
    customer_id = await factories.insert_wallet(engine, balance=300)
    body = order_body(sku, 1, customer_id=customer_id, store_credit=500)

    response = await api.post("/orders", json=body)

    order = await final_order(api, response.json()["order_id"])
    assert order["status"] == "CANCELLED", order
    assert order["two_phase"]["decision"] == "ABORT"
    assert order["two_phase"]["votes"]["store_credit"] == "NO"
    assert (await api.get(f"/wallets/{customer_id}")).json()["balance"] == 300
    assert await factories.stock_of(engine, sku) == 10
    assert await factories.prepared_branches(engine, order["order_id"]) == []


async def test_store_credit_is_part_of_the_idempotency_fingerprint(api, product, engine):
    sku = await product()
    customer_id = await factories.insert_wallet(engine, balance=1000)
    headers = {"Idempotency-Key": f"key-{uuid.uuid4()}"}
    body = order_body(sku, 1, customer_id=customer_id, store_credit=100)

    first = await api.post("/orders", json=body, headers=headers)
    other = await api.post("/orders", json={**body, "store_credit": 200}, headers=headers)
    replay = await api.post("/orders", json=body, headers=headers)

    assert (first.status_code, other.status_code, replay.status_code) == (202, 409, 200)
    assert replay.json()["order_id"] == first.json()["order_id"]
    await final_order(api, first.json()["order_id"])
    assert await factories.balance_of(engine, customer_id) == 900


async def test_order_view_claims_no_decision_while_it_is_pending(api, product, engine):
    """While a participant's prepare waits, the order reads as pending with nothing
    decided: served from what its steps committed (no query of the coordinator,
    whose votes are its own until it logs the decision), then the decision."""
    from tests.factories import eventually

    sku = await product(stock=5, price=1000)
    customer = await factories.insert_wallet(engine, balance=5000)
    # Hold the wallet row: the store-credit prepare waits, the stock's is done.
    async with factories.wallet_locked(engine, customer) as blocker:
        body = order_body(sku, 1, customer_id=customer, store_credit=400)
        order_id = (await api.post("/orders", json=body)).json()["order_id"]
        await eventually(
            lambda: factories.prepared_branches(engine, order_id),
            lambda b: b == [f"tpc:{order_id}:stock"],
        )
        pending = (await api.get(f"/orders/{order_id}")).json()
        await blocker.rollback()

    assert pending["status"] == "PENDING"
    assert pending["two_phase"] is None or pending["two_phase"]["decision"] is None
    assert "create_order" in pending["steps"]
    final = await final_order(api, order_id)
    assert final["two_phase"]["decision"] == "COMMIT"
    assert final["two_phase"]["votes"] == {"stock": "YES", "store_credit": "YES", "card": "YES"}


async def _long_wallet(engine: Any, credits: int, snapshot_every: int) -> str:
    """A wallet opened (version 1), then credited 1, 2, ... `credits` (versions 2 on)."""
    customer = factories.customer()
    store = WalletStore(snapshot_every=snapshot_every)
    async with engine.begin() as conn:
        for n in range(1, credits + 1):
            credit = functools.partial(wallet.credit, amount=n, entry_id=f"{customer}:c{n}")
            await store.change(conn, customer, credit)
    return customer


async def _replayed_by(api: Any, engine: Any, customer: str, at: str) -> tuple[Any, int]:
    """The answer to a read of the wallet at `at`, and how many of its events the read fetched."""
    with executed() as statements:
        response = await api.get(f"/wallets/{customer}", params={"at": at})
    events = reading_only(statements, "payments.wallet_events", about=customer)
    return response, await rows_returned(engine, events)


async def test_a_read_at_a_future_time_replays_only_the_events_after_the_latest_snapshot(
    api, engine
):
    # 57 events, a snapshot every 10: the latest at 50, then 7 events.
    customer = await _long_wallet(engine, credits=56, snapshot_every=10)

    response, replayed = await _replayed_by(api, engine, customer, "2999-01-01T00:00:00Z")

    assert response.status_code == 200, response.text
    assert (response.json()["balance"], response.json()["version"]) == (56 * 57 // 2, 57)
    assert replayed == 7


async def test_a_read_at_a_past_moment_folds_from_the_snapshot_before_it(api, engine):
    customer = await _long_wallet(engine, credits=56, snapshot_every=10)
    async with engine.connect() as conn:
        at = await conn.scalar(
            select(wallet_events.c.occurred_at).where(
                wallet_events.c.customer_id == customer, wallet_events.c.version == 35
            )
        )

    response, replayed = await _replayed_by(api, engine, customer, at.isoformat())

    # Credits 1..34 are versions 2..35: the snapshot at 30, then 31..35.
    assert (response.json()["balance"], response.json()["version"]) == (34 * 35 // 2, 35)
    assert replayed == 5


async def test_a_read_before_the_first_snapshot_folds_from_the_first_event(api, engine):
    customer = await _long_wallet(engine, credits=56, snapshot_every=10)
    async with engine.connect() as conn:
        at = await conn.scalar(
            select(wallet_events.c.occurred_at).where(
                wallet_events.c.customer_id == customer, wallet_events.c.version == 4
            )
        )

    response, replayed = await _replayed_by(api, engine, customer, at.isoformat())

    assert (response.json()["balance"], response.json()["version"]) == (6, 4)
    assert replayed == 4
