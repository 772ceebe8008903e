"""One trace from the API request, through the saga and its activities, the outbox row and
the relay, to the consumer that applies the event."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select

from consumers.order_history import order_history_consumer
from consumers.runner import ConsumerRunner
from db.tables import service_tables
from domain.order_saga import SagaState
from messaging.wire import STREAM, subject_for
from relay.config import RelayConfig
from relay.publisher import publish_chain
from tests import factories
from tests.spans import ancestors, captured_spans

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    with captured_spans() as exporter:
        yield exporter


def named(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name and s.parent is None] or [
        s for s in spans if s.name == name
    ]
    assert found, f"no span {name!r} among {sorted({s.name for s in spans})}"
    return found[-1]


async def test_one_trace_spans_api_workflow_activity_relay_and_consumer(
    spans, api, client, engine, js
):
    sku = await factories.insert_product(engine, stock=5, price=800)
    placed = await api.post(
        "/orders",
        json={
            "customer_id": "tracing",
            "items": [{"sku": sku, "quantity": 1}],
            "payment_token": "tok_visa",
        },
    )
    order_id = placed.json()["order_id"]
    handle = client.get_workflow_handle(f"order-{order_id}", result_type=SagaState)
    state: SagaState = await handle.result()
    outbox = service_tables["orders"].outbox
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(outbox).where(
                    outbox.c.aggregate_id == order_id, outbox.c.event_type == "OrderCreated"
                )
            )
        ).one()
    # The relay publishes this one row, and the order-history consumer applies it.
    published = await publish_chain(js, "orders", [row], RelayConfig(), None)
    assert published.published == [str(row.event_id)]
    info = await js.stream_info(STREAM)
    sub = await js.pull_subscribe(
        "",
        stream=STREAM,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=info.state.last_seq,
            filter_subject=subject_for("order", "OrderCreated"),
        ),
    )
    (msg,) = await sub.fetch(1, timeout=10)
    await ConsumerRunner(js, engine, order_history_consumer()).handle(msg)
    await sub.unsubscribe()

    finished = list(spans.get_finished_spans())
    request = named(finished, "POST /orders")
    started = named(finished, "StartWorkflow:OrderSaga")
    run = named(finished, "RunActivity:create_order")
    publish = named(finished, "publish OrderCreated")
    consume = named(finished, "consume OrderCreated")

    assert state.status == "CONFIRMED"
    trace_id = request.context.trace_id
    for span in (started, run, publish, consume):
        assert span.context.trace_id == trace_id, span.name
    assert request.parent is None  # the trace starts at the API
    assert request.context.span_id in ancestors(started, finished)
    assert started.context.span_id in ancestors(run, finished)
    assert row.headers["traceparent"].split("-")[2] == format(run.context.span_id, "016x")
    assert publish.parent is not None and publish.parent.span_id == run.context.span_id
    assert consume.parent is not None and consume.parent.span_id == publish.context.span_id
    assert msg.headers is not None and "traceparent" in msg.headers
