"""The payment steps against the real provider simulator, with faults injected over HTTP.

Each test runs its own workers (own task queues, provider client and circuit
breaker, settings of its own), installs faults with the simulator's admin API
(cleared when the test ends), and checks the order's outcome in PostgreSQL,
the provider's books, and the saga's workflow history. The simulator is this
module's own: a saga of another test still charging on the session's
simulator can never take a fault meant for these.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from activities.provider_client import PaymentProviderClient
from domain.activities import Act
from domain.order_saga import SagaState
from payment_provider.embedded import EmbeddedProvider
from resilience.breaker import BreakerState, CircuitBreaker
from stack.ports import free_port
from tests import factories
from tests.conftest import start_saga
from wiring.activities import all_activities
from wiring.root import build_workers, running

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
async def private_provider() -> AsyncIterator[EmbeddedProvider]:
    server = EmbeddedProvider(free_port())
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def provider_admin(private_provider: EmbeddedProvider) -> AsyncIterator[httpx.AsyncClient]:
    """This module's simulator's HTTP API; faults a test installs are cleared when it ends."""
    async with httpx.AsyncClient(base_url=private_provider.url, timeout=10) as http:
        yield http
        await http.delete("/admin/faults")


@pytest.fixture
def custom_worker(custom_worker: Any, private_provider: EmbeddedProvider) -> Any:
    """The conftest's custom workers, calling this module's simulator."""

    async def start(stand_ins: Any = None, **overrides: Any) -> str:
        queue: str = await custom_worker(
            stand_ins, payment_provider_url=private_provider.url, **overrides
        )
        return queue

    return start


FAST_RETRIES = {"payment_retry_initial_s": 0.4, "payment_retry_cap_s": 5.0}


async def provider_books(admin, order_id: str) -> dict[str, Any]:
    books: dict[str, Any] = (await admin.get("/v1/payments", params={"order_id": order_id})).json()
    return books


async def fault(admin, **spec: Any) -> str:
    response = await admin.post("/admin/faults", json=spec)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def attempts_of(handle: WorkflowHandle[Any, Any], activity_type: str) -> list[Any]:
    """The ActivityTaskStarted events of one activity type, in order."""
    history = await handle.fetch_history()
    scheduled = {
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == activity_type
    }
    return [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]


async def scheduled_at(handle: WorkflowHandle[Any, Any], activity_type: str) -> float:
    history = await handle.fetch_history()
    for e in history.events:
        attrs = e.activity_task_scheduled_event_attributes
        if (
            e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and attrs.activity_type.name == activity_type
        ):
            return e.event_time.ToDatetime().timestamp()
    raise AssertionError(f"{activity_type} never scheduled")


async def pending_failures(handle: WorkflowHandle[Any, Any], until: asyncio.Event) -> list[Any]:
    """Each failed attempt of the pending charge as Temporal reports it, until `until`."""
    seen: dict[int, Any] = {}
    while not until.is_set():
        for pending in (await handle.describe()).raw_description.pending_activities:
            if pending.activity_type.name == Act.CHARGE_PAYMENT and pending.HasField(
                "last_failure"
            ):
                seen.setdefault(pending.attempt, pending)
        await asyncio.sleep(0.05)
    return [seen[n] for n in sorted(seen)]


def delay_of(pending: Any) -> float:
    """The delay the activity asked for, from its failure's details."""
    info = pending.last_failure.application_failure_info
    from temporalio.converter import DataConverter

    (details,) = DataConverter.default.payload_converter.from_payloads(list(info.details.payloads))
    return float(details["delay_s"])


def asked_delays(caplog: pytest.LogCaptureFixture, workflow_id: str) -> list[float]:
    """Every delay the worker asked for after a failed charge, as it logged them."""
    found = []
    for record in caplog.records:
        activity = getattr(record, "temporal_activity", {})
        if (
            isinstance(record.msg, str)
            and record.msg.startswith("attempt %d failed")
            and activity.get("workflow_id") == workflow_id
            and activity.get("activity_type") == Act.CHARGE_PAYMENT
        ):
            _, _, delay = cast(tuple[int, Exception, float], record.args)
            found.append(round(delay, 3))
    return found


async def test_two_503s_then_success_charge_once_after_growing_jittered_delays(
    client: Client, custom_worker, product, engine, provider_admin, caplog
):
    caplog.set_level(logging.WARNING, logger="temporalio.activity")
    queue = await custom_worker(**FAST_RETRIES)
    sku = await product(stock=5, price=1500)
    await fault(provider_admin, status=503, count=3)
    handle = await start_saga(client, queue, [(sku, 2)])
    done = asyncio.Event()
    watching = asyncio.create_task(pending_failures(handle, done))
    state: SagaState = await handle.result()
    done.set()
    failures = await watching

    assert state.status == "CONFIRMED"
    books = await provider_books(provider_admin, state.order_id)
    assert [(a["status"], a["amount_captured"]) for a in books["authorizations"]] == [
        ("captured", 3000)
    ]
    assert len(books["captures"]) == 1
    assert len(await factories.payments_of(engine, state.order_id)) == 1
    started = await attempts_of(handle, Act.CHARGE_PAYMENT)
    assert [e.activity_task_started_event_attributes.attempt for e in started] == [4]
    last = started[0].activity_task_started_event_attributes.last_failure
    assert last.application_failure_info.type == "ProviderUnavailable"
    assert "503" in last.message
    # Attempt n waits in [d/2, d] with d = 0.4 s * 2^(n-1): growing, and jittered.
    delays = asked_delays(caplog, handle.id)
    assert len(delays) == 3, delays
    # Temporal holds each delay in the pending attempt's failure; sampled, so
    # perhaps not all three, but what it showed is what the worker asked for.
    assert failures and all(delay_of(p) in delays for p in failures), failures
    for n, delay in enumerate(delays, start=1):
        ceiling = 0.4 * 2 ** (n - 1)
        assert ceiling / 2 <= delay <= ceiling, (n, delays)
    assert delays == sorted(delays) and len(set(delays)) == 3
    # Not the bare exponential at either edge. One delay may land on an edge by chance
    # (they are rounded to the millisecond); all three only if jitter is missing.
    assert delays not in ([0.4, 0.8, 1.6], [0.2, 0.4, 0.8]), delays
    waited = started[0].event_time.ToDatetime().timestamp() - await scheduled_at(
        handle, Act.CHARGE_PAYMENT
    )
    assert waited >= sum(delays) - 0.05


async def test_a_429_is_retried_no_sooner_than_its_retry_after(
    client: Client, custom_worker, product, provider_admin
):
    queue = await custom_worker(**FAST_RETRIES)
    sku = await product(stock=5)
    await fault(provider_admin, status=429, retry_after=2, count=1)
    handle = await start_saga(client, queue, [(sku, 1)])
    state: SagaState = await handle.result()

    assert state.status == "CONFIRMED"
    (started,) = await attempts_of(handle, Act.CHARGE_PAYMENT)
    attrs = started.activity_task_started_event_attributes
    assert attrs.attempt == 2
    assert "429" in attrs.last_failure.message
    waited = started.event_time.ToDatetime().timestamp() - await scheduled_at(
        handle, Act.CHARGE_PAYMENT
    )
    assert waited >= 2.0, f"retried after {waited:.2f} s despite Retry-After: 2"


@pytest.mark.parametrize(
    ("token", "status", "refusal"),
    [("tok_decline", None, "PaymentDeclined"), ("tok_visa", 401, "PaymentRejected")],
)
async def test_a_refusal_is_not_retried_and_the_saga_compensates(
    client: Client, custom_worker, product, engine, provider_admin, token, status, refusal
):
    queue = await custom_worker(**FAST_RETRIES)
    sku = await product(stock=5)
    if status is not None:
        await fault(provider_admin, status=status, count=1)
    handle = await start_saga(client, queue, [(sku, 2)], payment_token=token)
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()

    assert isinstance(failed.value.cause, ApplicationError)
    assert failed.value.cause.type == refusal
    started = await attempts_of(handle, Act.CHARGE_PAYMENT)
    assert [e.activity_task_started_event_attributes.attempt for e in started] == [1]
    order_id = handle.id.removeprefix("order-")
    assert await factories.stock_of(engine, sku) == 5
    assert await factories.payments_of(engine, order_id) == []
    assert (await provider_books(provider_admin, order_id))["authorizations"] == []


@pytest.mark.parametrize("lost_on", ["authorize", "capture"])
async def test_a_charge_whose_answer_timed_out_is_retried_under_its_key_and_charges_once(
    client: Client, custom_worker, product, engine, provider_admin, lost_on
):
    # The provider applies the request, then holds its answer past the
    # client's read timeout: charged, but the worker can't know it.
    queue = await custom_worker(payment_read_timeout_s=1.0, **FAST_RETRIES)
    sku = await product(stock=5, price=700)
    path = "/capture" if lost_on == "capture" else "/v1/authorizations"
    await fault(provider_admin, mode="lose_answer", seconds=5, count=1, path_contains=path)
    handle = await start_saga(client, queue, [(sku, 1)])
    state: SagaState = await handle.result()

    assert state.status == "CONFIRMED"
    (started,) = await attempts_of(handle, Act.CHARGE_PAYMENT)
    attrs = started.activity_task_started_event_attributes
    assert attrs.attempt >= 2 and "ReadTimeout" in attrs.last_failure.message
    books = await provider_books(provider_admin, state.order_id)
    assert [(a["status"], a["amount_captured"]) for a in books["authorizations"]] == [
        ("captured", 700)
    ]
    assert [c["amount"] for c in books["captures"]] == [700]
    (payment,) = await factories.payments_of(engine, state.order_id)
    assert payment.provider_authorization_id == books["authorizations"][0]["id"]


async def test_provider_down_past_the_step_deadline_compensates_cleanly(
    client: Client, custom_worker, product, engine, provider_admin
):
    queue = await custom_worker(payment_step_deadline_s=3.0, **FAST_RETRIES)
    sku = await product(stock=5)
    await fault(provider_admin, mode="down")
    started = time.monotonic()
    handle = await start_saga(client, queue, [(sku, 2)])

    async def compensating() -> bool:
        return bool((await handle.query("state", result_type=SagaState)).compensating)

    await factories.eventually(compensating, bool, deadline_s=30)
    gave_up_s = time.monotonic() - started
    # The undo must ask the provider what the charge did: it waits for it to return.
    await provider_admin.delete("/admin/faults")
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()

    assert isinstance(failed.value.cause, ApplicationError)
    assert failed.value.cause.type == "PaymentUnavailable"
    assert "deadline" in failed.value.cause.message
    # It gives up once the next attempt would start past the 3 s deadline.
    assert gave_up_s < 3.0 + 5, gave_up_s
    (last,) = await attempts_of(handle, Act.CHARGE_PAYMENT)
    assert last.activity_task_started_event_attributes.attempt >= 3
    order_id = handle.id.removeprefix("order-")
    assert await factories.stock_of(engine, sku) == 5
    assert await factories.payments_of(engine, order_id) == []
    assert (await provider_books(provider_admin, order_id))["authorizations"] == []
    state: SagaState = await handle.query("state", result_type=SagaState)
    assert (state.status, state.compensations) == ("CANCELLED", ["release_stock", "cancel_order"])


async def test_breaker_opens_fails_fast_half_opens_and_closes_when_the_provider_recovers(
    client: Client, settings, engine, product, provider_admin, private_provider
):
    transitions: list[tuple[BreakerState, BreakerState]] = []
    breaker = CircuitBreaker(
        name="payments-test",
        failure_rate_threshold=50.0,
        sliding_window_size=4,
        minimum_calls=2,
        wait_in_open_s=8.0,
        half_open_calls=1,
        on_state_change=lambda _, old, new: transitions.append((old, new)),
    )
    own = settings.model_copy(update={**FAST_RETRIES, "payment_provider_url": private_provider.url})
    provider = PaymentProviderClient(own.payment_provider_target, breaker, read_timeout_s=2)
    queue = f"breaker-{time.monotonic_ns()}"
    fault_id = await fault(provider_admin, status=503, count=100)
    sku = await product(stock=5)
    activities = all_activities(engine, own, provider)
    async with running(build_workers(client, queue, activities, own)):
        handle = await start_saga(client, queue, [(sku, 1)])

        async def opened() -> bool:
            return breaker.state is BreakerState.OPEN

        await factories.eventually(opened, bool, deadline_s=20)

        async def failing_fast() -> Any:
            description = await handle.describe()
            return [
                p.last_failure.application_failure_info.type
                for p in description.raw_description.pending_activities
                if p.activity_type.name == Act.CHARGE_PAYMENT
            ]

        # Open: attempts fail in the worker, and the provider sees none of them.
        await factories.eventually(failing_fast, lambda types: types == ["CircuitOpen"])
        assert breaker.state is BreakerState.OPEN
        (active,) = (await provider_admin.get("/admin/faults")).json()["faults"]
        assert active["id"] == fault_id and active["remaining"] == 98
        await provider_admin.delete("/admin/faults")
        state: SagaState = await handle.result()
    await provider.aclose()

    assert state.status == "CONFIRMED"
    assert transitions == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]
    assert len((await provider_books(provider_admin, state.order_id))["captures"]) == 1


async def test_a_hanging_provider_does_not_hold_up_inventory(
    client: Client, custom_worker, product, engine, provider_admin
):
    # Two payment slots, both held by charges the provider never answers.
    queue = await custom_worker(
        payments_max_concurrent_activities=2,
        payment_read_timeout_s=20,
        payment_step_deadline_s=60,
    )
    await fault(provider_admin, mode="hang", seconds=30)
    sku = await product(stock=50)
    stalled = [await start_saga(client, queue, [(sku, 1)]) for _ in range(3)]

    async def charges_hanging() -> bool:
        states = [await h.query("state", result_type=SagaState) for h in stalled]
        return all(s.current_step == Act.CHARGE_PAYMENT for s in states)

    await factories.eventually(charges_hanging, bool, deadline_s=20)
    # Inventory has its own slots: new orders reserve stock at once.
    started = time.monotonic()
    fresh = [await start_saga(client, queue, [(sku, 2)]) for _ in range(4)]

    async def reserved() -> bool:
        states = [await h.query("state", result_type=SagaState) for h in fresh]
        return all("reserve_stock" in s.steps for s in states)

    await factories.eventually(reserved, bool, deadline_s=10)
    reserve_s = time.monotonic() - started
    # Well under the 30 s hang the payment slots are stuck in.
    assert reserve_s < 10, f"inventory waited {reserve_s:.1f} s behind the stalled provider"
    assert await factories.stock_of(engine, sku) == 50 - 3 - 8
    for handle in stalled + fresh:
        await handle.terminate("test over")
