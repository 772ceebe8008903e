"""The choreographed order on the real stack: PostgreSQL, the relay, JetStream, the
services' handlers and the payment simulator; no Temporal workflow anywhere.

Each test places an order through the orders service's entry point and reads
the outcome where it lands: the services' rows, their outbox events, the
provider's books and JetStream's consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.provider_client import PaymentProviderClient
from audit import Scope, run_audit
from choreography import metrics as choreography_metrics
from choreography import orders as choreographed
from choreography.handlers import Reactions
from choreography.service import OPTIONS, run, service_consumers
from choreography.timeouts import TimeoutStats
from consumers.runner import ConsumerRunner
from db.tables import orders, products, service_tables
from db.unit_of_work import StepContext, event_row, insert_events
from domain.choreography import CARRIED_HEADER, correlation_id_for
from domain.orders import OrderLine, PlaceOrder
from messaging import wire
from relay.publisher import envelope_of
from relay.stats import RelayStats
from security.sealed import Sealer
from settings import Settings
from stack.ports import LOOPBACK, free_port
from tests import factories
from tests.conftest import start_saga
from tests.factories import eventually
from tests.prometheus import labels_of, samples
from tests.spans import ancestors, captured_spans
from wiring.activities import provider_retry
from wiring.services import SERVICES

pytestmark = pytest.mark.asyncio

Start = Callable[..., Awaitable[None]]
PREFIX = "test-choreo-"


@pytest.fixture
def choreo_settings(relay_settings: Settings) -> Settings:
    return relay_settings.model_copy(
        update={
            "choreography_sweep_interval_s": 0.2,
            "choreography_concurrency": 2,
        }
    )


@pytest.fixture
async def services(
    js: JetStreamContext,
    engine: AsyncEngine,
    choreo_settings: Settings,
    provider_client: PaymentProviderClient,
    relay: RelayStats,
    order_history: None,
) -> AsyncIterator[Start]:
    """`await services("orders", ...)` runs those services' handlers until the test ends.

    Every service's durable exists from the start, as in a deployment where a
    service is down rather than never installed: one started late finds the
    events it missed waiting for it.
    """
    prefix = f"{PREFIX}{uuid.uuid4().hex[:8]}"
    sealer = Sealer.from_keys(choreo_settings.card_keys())
    reactions = Reactions(provider_client, provider_retry(choreo_settings.provider()), sealer)
    for consumer in service_consumers(reactions, SERVICES, prefix, DeliverPolicy.NEW):
        await ConsumerRunner(js, engine, consumer, OPTIONS).bind()
    stop = asyncio.Event()
    running: list[asyncio.Task[None]] = []

    async def start(*names: str, metrics_port: int = 0) -> None:
        own = choreo_settings.model_copy(update={"choreography_metrics_port": metrics_port})
        running.append(
            asyncio.create_task(
                run(
                    own.choreography(),
                    reactions,
                    stop,
                    list(names),
                    prefix=prefix,
                    deliver_policy=DeliverPolicy.NEW,
                )
            )
        )

    yield start
    stop.set()
    await asyncio.wait_for(asyncio.gather(*running), 30)
    for service in SERVICES:
        with contextlib.suppress(Exception):
            await js.delete_consumer(wire.STREAM, f"{prefix}-{service}")


@pytest.fixture
def place(engine: AsyncEngine, choreo_settings: Settings) -> Callable[..., Awaitable[str]]:
    """Place a choreographed order through the orders service, its card token sealed as the
    API seals it."""

    async def place_one(
        items: list[tuple[str, int]], token: str = "tok_visa", timeout_s: float = 60.0
    ) -> str:
        return await place_order(
            engine, items, token, timeout_s, Sealer.from_keys(choreo_settings.card_keys())
        )

    return place_one


async def place_order(
    engine: AsyncEngine,
    items: list[tuple[str, int]],
    token: str,
    timeout_s: float,
    sealer: Sealer,
) -> str:
    order_id = str(uuid.uuid4())
    order = PlaceOrder(
        order_id=order_id,
        customer_id=factories.customer(),
        items=[OrderLine(sku=sku, quantity=qty) for sku, qty in items],
        payment_token=sealer.seal(token, order_id),
    )
    deadline = datetime.now(UTC) + timedelta(seconds=timeout_s)
    await choreographed.place(engine, order, deadline)
    return order.order_id


async def row_or_none(engine: AsyncEngine, order_id: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(orders).where(orders.c.order_id == order_id))).first()


async def order_row(engine: AsyncEngine, order_id: str) -> Any:
    row = await row_or_none(engine, order_id)
    assert row is not None, f"no order {order_id}"
    return row


async def closed(engine: AsyncEngine, order_id: str, deadline_s: float = 20.0) -> Any:
    row = await eventually(
        lambda: order_row(engine, order_id), lambda r: r.status != "PENDING", deadline_s
    )
    return row


async def undone(engine: AsyncEngine, order_id: str, *expected: str) -> list[str]:
    """Wait until the order's outbox holds every one of `expected` events."""
    return await eventually(
        lambda: factories.events_of(engine, order_id), lambda seen: set(expected) <= set(seen)
    )


async def drained(js: JetStreamContext, *names: str, engine: AsyncEngine | None = None) -> None:
    """Wait until the test's durables of `names` have nothing undelivered or unacked
    (with `engine`: first until every outbox row is published, so all is in the stream)."""
    if engine is not None:
        await eventually(lambda: unpublished(engine), lambda n: n == 0)

    async def backlog() -> dict[str, int]:
        infos = await js.consumers_info(wire.STREAM)
        return {
            info.name: (info.num_pending or 0) + (info.num_ack_pending or 0)
            for info in infos
            if info.name.startswith(PREFIX) and info.name.rsplit("-", 1)[1] in names
        }

    await eventually(backlog, lambda left: len(left) == len(names) and not any(left.values()))


async def unpublished(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return sum(
            [
                await conn.scalar(
                    select(func.count()).where(service_tables[s].outbox.c.status == "PENDING")
                )
                or 0
                for s in SERVICES
            ]
        )


async def outbox_headers(engine: AsyncEngine, order_id: str) -> list[dict[str, Any]]:
    found = []
    async with engine.connect() as conn:
        for service in SERVICES:
            outbox = service_tables[service].outbox
            rows = await conn.execute(
                select(outbox.c.headers).where(outbox.c.aggregate_id == order_id)
            )
            found += [r.headers for r in rows]
    return found


async def test_an_order_runs_from_event_to_event_to_confirmed(engine, services, product, place):
    await services(*SERVICES)
    sku = await product(stock=10, price=1500)
    order_id = await place([(sku, 2)])

    row = await closed(engine, order_id)

    assert row.status == "CONFIRMED"
    assert row.saga_mode == "choreography"
    assert row.workflow_id == f"choreography-{order_id}"
    assert await factories.stock_of(engine, sku) == 8
    [reservation] = await factories.reservations_of(engine, order_id)
    assert reservation.status == "RESERVED"
    await factories.check_confirmed_effects(engine, order_id, amount=3000)
    # Each event carried the order on, priced from StockReserved on.
    carried = [h[CARRIED_HEADER] for h in await outbox_headers(engine, order_id)]
    assert len(carried) == 5 and all(c["order_id"] == order_id for c in carried)
    totals = [c["total"] for c in carried]
    assert (totals.count(None), totals.count(3000)) == (1, 4)
    # The token, sealed, travels as far as payments and no further.
    tokens = sorted(c["payment_token"][:7] for c in carried)
    assert tokens == ["", "", "", "sealed:", "sealed:"]
    assert "tok_visa" not in str(await outbox_headers(engine, order_id))


async def test_a_declined_card_undoes_the_reservation_and_cancels_the_order(
    engine, services, product, provider_client, place
):
    await services(*SERVICES)
    sku = await product(stock=5)
    order_id = await place([(sku, 3)], token="tok_decline")

    row = await closed(engine, order_id)
    await undone(engine, order_id, "StockReleased")

    assert row.status == "CANCELLED"
    assert "declined" in row.failure_reason
    assert await factories.stock_of(engine, sku) == 5
    [reservation] = await factories.reservations_of(engine, order_id)
    assert reservation.status == "RELEASED"
    assert await factories.payments_of(engine, order_id) == []
    assert await factories.shipments_of(engine, order_id) == []
    events = await factories.events_of(engine, order_id)
    assert events[:4] == ["OrderCreated", "StockReserved", "PaymentFailed", "OrderCancelled"]
    held = await provider_client.payments_for(order_id)
    assert all(a["amount_captured"] == 0 for a in held["authorizations"])


async def test_out_of_stock_cancels_the_order_with_nothing_to_undo(
    engine, services, product, place
):
    await services(*SERVICES)
    sku = await product(stock=1)
    order_id = await place([(sku, 2)])

    row = await closed(engine, order_id)

    assert row.status == "CANCELLED"
    assert "out of stock" in row.failure_reason
    assert await factories.stock_of(engine, sku) == 1
    assert await factories.reservations_of(engine, order_id) == []
    assert await factories.events_of(engine, order_id) == [
        "OrderCreated",
        "StockReservationFailed",
        "OrderCancelled",
    ]


async def test_an_order_stalled_by_a_service_down_is_timed_out_and_undone(
    engine, js, services, product, provider_client, place
):
    """Shipping is down: the order stalls after its payment, the orders service's
    timeout cancels it, and inventory and payments undo their steps. Shipping,
    back later, finds its step fenced and creates no shipment."""
    await services("orders", "inventory", "payments")
    sku = await product(stock=4, price=700)
    # Long enough for two hops and a charge on a loaded machine: it must stall at shipping.
    order_id = await place([(sku, 1)], timeout_s=8.0)

    row = await closed(engine, order_id, deadline_s=30)
    await undone(engine, order_id, "StockReleased", "PaymentRefunded")

    assert row.status == "CANCELLED"
    assert row.failure_reason.startswith("timed out waiting for create_shipment")
    assert await factories.stock_of(engine, sku) == 4
    [payment] = await factories.payments_of(engine, order_id)
    assert (payment.status, payment.refunded_amount) == ("REFUNDED", 700)
    [auth] = (await provider_client.payments_for(order_id))["authorizations"]
    assert auth["amount_refunded"] == auth["amount_captured"] == 700

    await services("shipping")
    await drained(js, "shipping", engine=engine)  # PaymentCaptured, then OrderCancelled
    assert await factories.shipments_of(engine, order_id) == []
    assert (await order_row(engine, order_id)).status == "CANCELLED"
    violations = await run_audit(
        engine, Scope(since=row.created_at, grace=timedelta(0)), provider_client, read_model=False
    )
    assert [v for v in violations if v.subject == order_id] == []


async def test_the_metrics_page_shows_overdue_orders_the_timeouts_and_each_consumer(
    engine, services, product, place
):
    """An order placed already past its deadline counts as overdue until a sweep runs
    (the gauges read with no sweep running); the orders service's process then times
    it out, and its page counts that and what its consumers did."""

    async def overdue_now() -> str:
        return "\n".join(await choreography_metrics.lines(engine, TimeoutStats()))

    baseline = samples(await overdue_now(), "saga_choreography_overdue_orders")[0]
    sku = await product(stock=3)
    order_id = await place([(sku, 1)], timeout_s=-5.0)
    overdue = await overdue_now()
    port = free_port()
    await services("orders", "inventory", metrics_port=port)

    row = await closed(engine, order_id)
    await undone(engine, order_id, "OrderCancelled")
    assert row.failure_reason.startswith("timed out waiting for"), row  # by the sweep

    async def scrape() -> str:
        async with httpx.AsyncClient() as http:
            return (await http.get(f"http://{LOOPBACK}:{port}/metrics")).text

    def settled(text: str) -> bool:
        handled = samples(text, "saga_consumer_messages_total", outcome="applied")
        return sum(handled) >= 2 and samples(text, "saga_choreography_overdue_orders") == [0]

    page = await eventually(scrape, settled)
    assert samples(overdue, "saga_choreography_overdue_orders")[0] >= baseline + 1
    assert samples(overdue, "saga_choreography_overdue_seconds")[0] >= 5
    assert samples(page, "saga_choreography_timed_out_total")[0] >= 1  # ours, and any left over
    assert samples(page, "saga_choreography_timeout_failures_total") == [0]
    assert samples(page, "saga_choreography_failed_sweeps_total") == [0]
    consumers = {
        name.rsplit("-", 1)[1]: name
        for name in {
            labels["consumer"] for labels in labels_of(page, "saga_consumer_pending_messages")
        }
    }
    assert sorted(consumers) == ["inventory", "orders"]
    # Inventory passed over the expired OrderCreated and answered the cancel.
    inventory = consumers["inventory"]
    assert (
        samples(page, "saga_consumer_messages_total", consumer=inventory, outcome="applied")[0] >= 2
    )
    for name in consumers.values():
        assert samples(page, "saga_consumer_messages_total", consumer=name, outcome="poison") == [0]
    assert await factories.stock_of(engine, sku) == 3


async def test_a_client_cancel_undoes_what_the_services_did(engine, services, product, place):
    await services("orders", "inventory")  # the order waits at payment
    sku = await product(stock=3)
    order_id = await place([(sku, 2)])
    await undone(engine, order_id, "StockReserved")

    closed_now = await choreographed.cancel(engine, order_id, "changed my mind")
    await undone(engine, order_id, "StockReleased")

    assert closed_now is not None and closed_now.status == "CANCELLED"
    row = await order_row(engine, order_id)
    assert (row.status, row.failure_reason) == ("CANCELLED", "changed my mind")
    assert await factories.stock_of(engine, sku) == 3
    # A second cancel finds it done; the timeout later changes nothing either.
    again = await choreographed.cancel(engine, order_id, "again")
    assert again is not None and again.status == "CANCELLED"
    assert (await order_row(engine, order_id)).failure_reason == "changed my mind"


async def test_an_event_delivered_twice_reserves_once(engine, js, services, product, place):
    await services("inventory")
    sku = await product(stock=10)
    order_id = await place([(sku, 3)])
    await undone(engine, order_id, "StockReserved")

    # The relay's OrderCreated again, under a new message id: JetStream keeps it,
    # the handler's inbox and the step's key must drop it.
    outbox = service_tables["orders"].outbox
    async with engine.connect() as conn:
        created = (
            await conn.execute(select(outbox).where(outbox.c.aggregate_id == order_id))
        ).one()
    subject, body, headers = envelope_of("orders", created)
    await js.publish(subject, body, headers={**headers, wire.MSG_ID: f"again-{uuid.uuid4()}"})
    await drained(js, "inventory")

    assert await factories.stock_of(engine, sku) == 7
    assert len(await factories.reservations_of(engine, order_id)) == 1
    assert (await factories.events_of(engine, order_id)).count("StockReserved") == 1


async def test_an_order_cancel_forged_by_another_service_or_on_another_subject_is_refused(
    engine, js, services, product, provider_client, place
):
    """A confirmed order, then two forged OrderCancelled: one written to the payments
    outbox, as a compromised payments service could (the relay publishes it as
    payments'), and one published on inventory's OrderCreated subject. Every service
    refuses both: nothing is released, refunded or cancelled."""
    port = free_port()
    await services(*SERVICES, metrics_port=port)
    sku = await product(stock=5, price=1000)
    order_id = await place([(sku, 1)])
    assert (await closed(engine, order_id)).status == "CONFIRMED"
    outbox = service_tables["orders"].outbox
    async with engine.connect() as conn:
        created = (
            await conn.execute(
                select(outbox.c.headers).where(
                    outbox.c.aggregate_id == order_id, outbox.c.event_type == "OrderCreated"
                )
            )
        ).one()
    carried = {CARRIED_HEADER: created.headers[CARRIED_HEADER]}
    cancel = {"order_id": order_id, "reason": "forged"}

    context = StepContext(
        service_tables["payments"], f"forged-{uuid.uuid4()}", correlation_id_for(order_id)
    )
    from_payments = event_row(context, "order", order_id, "OrderCancelled", cancel)
    from_payments["headers"].update(carried)
    async with engine.begin() as conn:
        await insert_events(conn, service_tables["payments"].outbox, [from_payments])
    on_another_subject = wire.Envelope(
        event_id=str(uuid.uuid4()),
        source="orders",
        aggregate_type="order",
        aggregate_id=order_id,
        event_type="OrderCancelled",
        payload=cancel,
        headers=carried,
        occurred_at=datetime.now(UTC),
    )
    await js.publish(
        wire.subject_for("order", "OrderCreated"),
        on_another_subject.model_dump_json().encode(),
        headers={wire.MSG_ID: on_another_subject.event_id},
    )
    await drained(js, *SERVICES, engine=engine)

    assert (await order_row(engine, order_id)).status == "CONFIRMED"
    assert await factories.stock_of(engine, sku) == 4
    assert [r.status for r in await factories.reservations_of(engine, order_id)] == ["RESERVED"]
    payments = await factories.payments_of(engine, order_id)
    assert [(p.status, p.refunded_amount) for p in payments] == [("CAPTURED", 0)]
    assert [s.status for s in await factories.shipments_of(engine, order_id)] == ["CREATED"]
    [auth] = (await provider_client.payments_for(order_id))["authorizations"]
    assert auth["amount_refunded"] == 0
    undos = {"StockReleased", "PaymentRefunded", "ShipmentCancelled"}
    assert undos.isdisjoint(await factories.events_of(engine, order_id))
    async with httpx.AsyncClient() as http:
        page = (await http.get(f"http://{LOOPBACK}:{port}/metrics")).text
    names = {labels["consumer"] for labels in labels_of(page, "saga_consumer_messages_total")}
    refused = {
        name.rsplit("-", 1)[1]: samples(
            page, "saga_consumer_messages_total", consumer=name, outcome="refused"
        )[0]
        for name in names
    }
    # Inventory had both (it reacts to OrderCreated and OrderCancelled); the others the first.
    assert refused == {"orders": 0, "inventory": 2, "payments": 1, "shipping": 1}


async def test_orchestrated_orders_events_are_passed_over(engine, js, services, saga, product):
    await services(*SERVICES)
    sku = await product(stock=10)
    handle = await saga([(sku, 1)])
    await handle.result()
    order_id = handle.id.removeprefix("order-")
    await drained(js, *SERVICES, engine=engine)

    # One reservation and one payment: the saga's, none from a handler.
    assert len(await factories.reservations_of(engine, order_id)) == 1
    assert len(await factories.payments_of(engine, order_id)) == 1
    assert (await order_row(engine, order_id)).saga_mode == "orchestration"


async def test_a_service_back_after_a_cancel_leaves_nothing_behind(
    engine, js, services, product, provider_client, place
):
    """Shipping is down while the client cancels: when it comes back it reads the
    payment's event and then the cancel, in either order, and no shipment stays."""
    await services("orders", "inventory", "payments")
    sku = await product(stock=2, price=900)
    order_id = await place([(sku, 1)])
    await undone(engine, order_id, "PaymentCaptured")

    await choreographed.cancel(engine, order_id, "changed my mind")
    await undone(engine, order_id, "StockReleased", "PaymentRefunded")
    await services("shipping")
    await drained(js, "shipping", engine=engine)

    assert [s.status for s in await factories.shipments_of(engine, order_id)] in ([], ["CANCELLED"])
    assert await factories.stock_of(engine, sku) == 2
    row = await order_row(engine, order_id)
    violations = await run_audit(
        engine, Scope(since=row.created_at, grace=timedelta(0)), provider_client, read_model=False
    )
    assert [v for v in violations if v.subject == order_id] == []


def order_body(sku: str, **extra: Any) -> dict[str, Any]:
    return {
        "customer_id": factories.customer(),
        "items": [{"sku": sku, "quantity": 1}],
        "payment_token": "tok_visa",
        "mode": "choreography",
        **extra,
    }


async def test_the_api_places_shows_and_lists_a_choreographed_order(
    api, engine, client, services, product
):
    await services(*SERVICES)
    sku = await product(stock=5, price=1200)
    key = f"key-{uuid.uuid4()}"

    placed = await api.post("/orders", json=order_body(sku), headers={"Idempotency-Key": key})
    assert placed.status_code == 202, placed.text
    order_id = placed.json()["order_id"]

    async def view() -> dict[str, Any]:
        return (await api.get(f"/orders/{order_id}")).json()  # type: ignore[no-any-return]

    shown = await eventually(
        view, lambda v: v["status"] == "CONFIRMED" and "confirm_order" in v["steps"]
    )
    assert shown["mode"] == "choreography"
    assert shown["steps"] == [
        "create_order",
        "reserve_stock",
        "charge_payment",
        "create_shipment",
        "confirm_order",
    ]
    assert (shown["compensations"], shown["current_step"], shown["total"]) == ([], None, 1200)
    events = (await api.get(f"/orders/{order_id}/events")).json()
    assert [e["event_type"] for e in events] == [
        "OrderCreated",
        "StockReserved",
        "PaymentCaptured",
        "ShipmentCreated",
        "OrderConfirmed",
    ]
    listed = (await api.get("/orders", params={"customer_id": shown["customer_id"]})).json()
    assert [(o["order_id"], o["mode"]) for o in listed] == [(order_id, "choreography")]
    with pytest.raises(RPCError):  # no workflow ran it
        await client.get_workflow_handle(f"order-{order_id}").describe()

    # The key replayed: the same order; the key with another mode: refused.
    replay = await api.post(
        "/orders",
        json=order_body(sku) | {"customer_id": shown["customer_id"]},
        headers={"Idempotency-Key": key},
    )
    assert (replay.status_code, replay.json()["order_id"]) == (200, order_id)
    other = order_body(sku) | {"customer_id": shown["customer_id"], "mode": "orchestration"}
    reused = await api.post("/orders", json=other, headers={"Idempotency-Key": key})
    assert reused.status_code == 409


async def test_one_key_posted_in_both_modes_at_once_is_accepted_once(api, engine, product):
    """Each key is sent once per mode at the same moment: one request is accepted,
    the other refused, and the order runs in the accepted one's mode. (Before the
    API claimed the id first, both could be accepted: the orchestrated saga writes
    its row only when its first step runs.)"""
    sku = await product(stock=20)
    for _ in range(4):
        key = {"Idempotency-Key": f"race-{uuid.uuid4()}"}
        body = order_body(sku)
        answers = await asyncio.gather(
            api.post("/orders", json=body, headers=key),
            api.post("/orders", json=body | {"mode": "orchestration"}, headers=key),
        )
        codes = [answer.status_code for answer in answers]
        assert sorted(codes) == [202, 409], [answer.text for answer in answers]
        won = ("choreography", "orchestration")[codes.index(202)]
        order_id = answers[codes.index(202)].json()["order_id"]
        row = await eventually(partial(row_or_none, engine, order_id), lambda r: r is not None)
        assert row.saga_mode == won
        if won == "orchestration":
            assert (await closed(engine, order_id)).status == "CONFIRMED"


async def test_a_refused_choreographed_order_leaves_its_key_free(api, engine, product):
    """Lines in two currencies are refused with nothing written, so the same key
    may then place a valid order."""
    sku, other = await product(), await product()
    async with engine.begin() as conn:
        await conn.execute(products.update().where(products.c.sku == other).values(currency="USD"))
    key = {"Idempotency-Key": f"refused-{uuid.uuid4()}"}
    body = order_body(sku)
    mixed = body | {"items": [{"sku": sku, "quantity": 1}, {"sku": other, "quantity": 1}]}

    refused = await api.post("/orders", json=mixed, headers=key)
    placed = await api.post("/orders", json=body, headers=key)

    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "items"
    assert placed.status_code == 202, placed.text
    row = await order_row(engine, placed.json()["order_id"])
    assert (row.saga_mode, row.status) == ("choreography", "PENDING")


async def test_the_api_cancels_a_choreographed_order_and_shows_its_undos(
    api, engine, services, product
):
    await services("orders", "inventory")  # waits at payment
    sku = await product(stock=5)
    order_id = (await api.post("/orders", json=order_body(sku))).json()["order_id"]
    await undone(engine, order_id, "StockReserved")

    cancelled = await api.post(f"/orders/{order_id}/cancel", json={"reason": "too slow"})
    assert cancelled.status_code == 202, cancelled.text

    async def view() -> dict[str, Any]:
        return (await api.get(f"/orders/{order_id}")).json()  # type: ignore[no-any-return]

    shown = await eventually(view, lambda v: "release_stock" in v["compensations"])
    assert (shown["status"], shown["failure_reason"]) == ("CANCELLED", "too slow")
    assert shown["steps"] == ["create_order", "reserve_stock"]
    assert set(shown["compensations"]) == {"cancel_order", "release_stock"}
    assert await factories.stock_of(engine, sku) == 5


async def test_a_confirmed_choreographed_order_cannot_be_cancelled(api, engine, services, product):
    await services(*SERVICES)
    sku = await product(stock=5)
    order_id = (await api.post("/orders", json=order_body(sku))).json()["order_id"]
    await closed(engine, order_id)

    refused = await api.post(f"/orders/{order_id}/cancel")

    assert refused.status_code == 409
    assert "CONFIRMED" in refused.json()["detail"]
    assert (await order_row(engine, order_id)).status == "CONFIRMED"


async def test_an_orchestrated_saga_given_a_choreographed_orders_id_leaves_it_alone(
    engine, client, settings, worker, product, place
):
    """One Idempotency-Key sent once per mode, racing: the first to create the order
    owns it, and the other saga ends refused without closing it."""
    sku = await product(stock=5)
    order_id = await place([(sku, 1)])  # no handlers run: it stays PENDING

    handle = await start_saga(client, settings.task_queue, [(sku, 1)], order_id=order_id)
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()

    assert isinstance(failed.value.cause, ApplicationError)
    assert failed.value.cause.type == "OrderExists"
    row = await order_row(engine, order_id)
    assert (row.status, row.saga_mode) == ("PENDING", "choreography")
    assert await factories.stock_of(engine, sku) == 5


async def test_a_choreographed_order_is_one_trace_across_the_services(
    api, engine, services, product
):
    """The trace context rides in the outbox headers, so each service's handler
    continues the trace of the request that placed the order."""
    await services(*SERVICES)
    sku = await product(stock=5)
    with captured_spans() as exporter:
        placed = await api.post("/orders", json=order_body(sku))
        order_id = placed.json()["order_id"]
        await eventually(
            lambda: api.get(f"/orders/{order_id}"), lambda r: r.json()["status"] == "CONFIRMED"
        )
        finished = list(exporter.get_finished_spans())

    def handled(event: str) -> Any:
        [span] = [
            s
            for s in finished
            if s.name == f"consume {event}"
            and str((s.attributes or {}).get("consumer", "")).startswith("test-choreo-")
            and (s.attributes or {}).get("event_id") in ids
        ]
        return span

    ids = set()
    async with engine.connect() as conn:
        for service in SERVICES:
            outbox = service_tables[service].outbox
            found = await conn.scalars(
                select(outbox.c.event_id).where(outbox.c.aggregate_id == order_id)
            )
            ids |= {str(event_id) for event_id in found}
    request = next(s for s in finished if s.name == "POST /orders")
    events = ("OrderCreated", "StockReserved", "PaymentCaptured", "ShipmentCreated")
    steps = [handled(event) for event in events]
    assert {s.context.trace_id for s in steps} == {request.context.trace_id}
    # Each service's handling descends from the one before it.
    for earlier, later in itertools.pairwise(steps):
        assert earlier.context.span_id in ancestors(later, finished)
