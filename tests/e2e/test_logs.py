"""JSON log lines carry the workflow and order they are about, and never a payment token."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from observability.logs import configure, redact
from payment_provider.embedded import EmbeddedProvider
from relay.publisher import event_log_context
from settings import Settings
from stack.ports import free_port
from tests.conftest import start_saga


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The process's logging as production configures it, into a buffer; restored after."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure(Settings(log_format="json", log_level="INFO"), "test")
    buffer = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    yield buffer
    root.handlers[:], root.level = saved_handlers, saved_level


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


async def test_activity_and_api_lines_name_the_workflow_and_the_order(
    json_lines, client, custom_worker, product, api
):
    # A provider of this test's own: the session's may be answering other
    # tests' sagas still in flight, which would take the one injected fault.
    provider = EmbeddedProvider(free_port())
    await provider.start()
    try:
        queue = await custom_worker(
            payment_provider_url=provider.url, payment_retry_initial_s=0.2, payment_retry_cap_s=1.0
        )
        async with httpx.AsyncClient(base_url=provider.url) as admin:
            await admin.post("/admin/faults", json={"status": 503, "count": 1})
        handle = await start_saga(client, queue, [(await product(), 1)])
        await handle.result()
    finally:
        await provider.stop()
    order_id = handle.id.removeprefix("order-")
    await api.get(f"/orders/{order_id}")

    logged = lines(json_lines)

    retried = [line for line in logged if "attempt 1 failed" in line["message"]]
    assert retried, logged
    assert retried[0]["workflow_id"] == handle.id
    assert retried[0]["order_id"] == order_id
    assert retried[0]["activity"] == "charge_payment"
    assert retried[0]["level"] == "WARNING" and retried[0]["service"] == "test"
    access = [line for line in logged if line["logger"] == "api.access"]
    assert access and access[-1]["order_id"] == order_id
    assert access[-1]["message"].startswith(f"GET /orders/{order_id} 200")
    assert "tok_visa" not in json_lines.getvalue()


def test_a_relay_line_names_its_event_saga_and_order(json_lines):
    order_id = str(uuid.uuid4())
    row = SimpleNamespace(event_id=uuid.uuid4(), headers={"correlation_id": f"order-{order_id}"})

    with event_log_context(row):  # type: ignore[arg-type]
        logging.getLogger("relay.publisher").warning("published twice")

    (line,) = lines(json_lines)
    assert (line["order_id"], line["workflow_id"]) == (order_id, f"order-{order_id}")
    assert line["event_id"] == str(row.event_id)


def test_tokens_and_secrets_are_redacted_in_messages_and_tracebacks(json_lines):
    log = logging.getLogger("anything")
    log.info("charging with payment_token=tok_visa_4242 for %s", "order-1")
    log.info('body {"payment_token": "tok_mastercard", "api_key": "k-123"}')
    try:
        raise ValueError("declined tok_amex_1")
    except ValueError:
        log.exception("failed")

    text = json_lines.getvalue()
    assert "tok_visa_4242" not in text and "tok_mastercard" not in text and "k-123" not in text
    assert "tok_amex_1" not in text
    assert "[redacted]" in text
    assert redact("Authorization: Bearer abc.def") == "Authorization: [redacted]"
    assert redact("x-api-key api_key=s3cret") == "x-api-key api_key=[redacted]"
