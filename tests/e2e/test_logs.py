"""JSON log lines carry the workflow and order they are about, never a payment token, and in
either format no control character a request brought."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from observability.logs import redact
from payment_provider.embedded import EmbeddedProvider
from relay.publisher import event_log_context
from stack.ports import free_port
from tests.conftest import start_saga
from tests.log_capture import configured


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    yield from configured("json", quiet=("httpx",))


@pytest.fixture
def text_lines() -> Iterator[io.StringIO]:
    yield from configured("text", quiet=("httpx",))


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


# What a path's bytes look like once percent-decoded, and how a log line writes them.
HOSTILE = [
    ("%0A", "\n", "\\n"),
    ("%0D", "\r", "\\r"),
    ("%1B%5B2J", "\x1b[2J", "\\x1b[2J"),  # ESC [2J clears a terminal
    ("%7F", "\x7f", "\\x7f"),
    ("%C2%9B", "\x9b", "\\x9b"),  # C1 CSI, ESC [ in one character
    ("%E2%80%A8", "\u2028", "\\u2028"),
    ("%E2%80%A9", "\u2029", "\\u2029"),
    ("%5C", "\\", "\\\\"),
]
_TIME = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}"


def _forging_path(marker: str) -> tuple[str, str]:
    """A path that, logged raw, ends its line and writes a forged access line after it;
    and the path as an escaped line must show it."""
    forged = f"2026-11-25 10:00:00,000 INFO api.access: GET /orders/{marker}-paid 200 1.0 ms"
    sent = f"/orders/{marker}%0A{forged.replace(' ', '%20')}"
    shown = f"/orders/{marker}\\n{forged}"
    for encoded, _, escaped in HOSTILE:
        sent += f"-{encoded}"
        shown += f"-{escaped}"
    return sent, shown


async def test_a_newline_in_a_path_cannot_forge_a_text_log_line(text_lines, api):
    marker = uuid.uuid4().hex
    sent, shown = _forging_path(marker)

    assert (await api.get(sent)).status_code == 404
    assert (await api.get(f"{sent}/events")).status_code == 404

    logged = [line for line in text_lines.getvalue().split("\n") if marker in line]
    expected = [
        rf"{_TIME} INFO api\.access: GET {re.escape(shown)} 404 \d+\.\d ms",
        rf"{_TIME} INFO api\.access: GET {re.escape(shown)}/events 404 \d+\.\d ms",
    ]
    assert len(logged) == len(expected), logged
    for line, pattern in zip(logged, expected, strict=True):
        assert re.fullmatch(pattern, line), line
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]", text_lines.getvalue())


async def test_control_characters_in_a_path_are_escaped_in_every_json_field(json_lines, api):
    marker = uuid.uuid4().hex
    sent, shown = _forging_path(marker)

    assert (await api.get(sent)).status_code == 404

    raw = [line for line in json_lines.getvalue().split("\n") if marker in line]
    assert len(raw) == 1, raw
    (line,) = [json.loads(one) for one in raw]
    assert line["logger"] == "api.access"
    assert re.fullmatch(rf"GET {re.escape(shown)} 404 \d+\.\d ms", line["message"])
    # The order the request named, bound from its path's segment: escaped the same way.
    order_id = shown.removeprefix("/orders/").split("/")[0]
    assert (line["order_id"], line["workflow_id"]) == (order_id, f"order-{order_id}")
    assert "\x7f" not in raw[0]
