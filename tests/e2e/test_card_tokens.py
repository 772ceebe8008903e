"""Card tokens never sit in clear in Temporal, codec or not: the API seals them to their
order, and only the payment activities open them, right before calling the provider.

Orders go through the API to workers of their own, whose payment provider is a
simulator of this test's own that journals every request: what it was sent is
read back from its books, what Temporal holds from every history of the order.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.exceptions import ApplicationError

from api.schemas import PlaceOrderRequest
from db.tables import service_tables
from domain.order_saga import SagaState
from domain.two_phase import branch_gid, coordinator_workflow_id
from payment_provider.embedded import EmbeddedProvider
from payment_provider.state import ProviderState
from security.sealed import Sealer
from stack.ports import free_port
from tests import factories
from tests.asgi import serve
from wiring.services import SERVICES

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def journaled_provider(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedProvider, Path]]:
    journal = tmp_path / "provider.jsonl"
    server = EmbeddedProvider(free_port(), ProviderState(journal=journal))
    await server.start()
    yield server, journal
    await server.stop()


async def histories_of(client: Client, workflow_id: str) -> dict[str, WorkflowHistory]:
    """The workflow's full history and those of its children, theirs too, by workflow id."""
    found: dict[str, WorkflowHistory] = {}
    waiting = [workflow_id]
    while waiting:
        one = waiting.pop()
        history = found[one] = await client.get_workflow_handle(one).fetch_history()
        waiting += [
            e.start_child_workflow_execution_initiated_event_attributes.workflow_id
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
        ]
    return found


def sent_tokens(journal: Path) -> dict[str, str]:
    """The token of each authorization the provider was asked for, by idempotency key."""
    tokens = {}
    for line in journal.read_text().splitlines():
        answer = json.loads(line)["answer"]
        method, path, body = json.loads(answer["fingerprint"])
        if (method, path) == ("POST", "/v1/authorizations"):
            tokens[answer["key"]] = body["payment_token"]
    return tokens


async def outbox_rows(engine: AsyncEngine, order_id: str) -> list[Any]:
    """Every service's outbox events about the order, payloads and headers."""
    found: list[Any] = []
    async with engine.connect() as conn:
        for service in SERVICES:
            outbox = service_tables[service].outbox
            query = select(outbox.c.payload, outbox.c.headers)
            found += (await conn.execute(query.where(outbox.c.aggregate_id == order_id))).all()
    return found


async def test_no_history_holds_a_card_token_and_the_provider_gets_it_opened(
    settings, client, custom_worker, journaled_provider, product, engine, caplog
):
    assert settings.payload_codec_key is None  # the codec is off: nothing else hides them
    caplog.set_level(logging.DEBUG)
    provider, journal = journaled_provider
    queue = await custom_worker(payment_provider_url=provider.url)
    sku = await product(stock=10, price=1000)
    wallet = await factories.insert_wallet(engine, balance=1000)
    card_token, split_token = (f"tok_{kind}_{uuid.uuid4().hex}" for kind in ("card", "split"))
    orders: dict[str, Any] = {
        "card": {"customer_id": factories.customer(), "payment_token": card_token},
        "split": {"customer_id": wallet, "payment_token": split_token, "store_credit": 800},
    }

    async for api in serve(settings.model_copy(update={"task_queue": queue})):
        for body in orders.values():
            body["items"] = [{"sku": sku, "quantity": 2}]
            placed = await api.post("/orders", json=body)
            assert placed.status_code == 202, placed.text
            body["order_id"] = placed.json()["order_id"]
    histories: dict[str, WorkflowHistory] = {}
    for body in orders.values():
        handle = client.get_workflow_handle(f"order-{body['order_id']}", result_type=SagaState)
        assert (await handle.result()).status == "CONFIRMED"
        histories |= await histories_of(client, handle.id)

    split_id = orders["split"]["order_id"]
    assert set(histories) == {
        f"order-{orders['card']['order_id']}",
        f"order-{split_id}",
        coordinator_workflow_id(split_id),
    }
    for workflow_id, history in histories.items():
        # Serialized whole: every payload's bytes (inputs, results, failures,
        # memo, search attributes, summaries) and every other field.
        raw = b"".join(event.SerializeToString() for event in history.events)
        for token in (card_token, split_token):
            assert token.encode() not in raw, f"{workflow_id} holds {token} in clear"
        assert b"sealed:t1:" in raw, f"{workflow_id}: no sealed token, so nothing was searched"
    assert sent_tokens(journal) == {
        f"order-{orders['card']['order_id']}:charge_payment:authorize": card_token,
        f"{branch_gid(split_id, 'card')}:authorize": split_token,
    }
    for body in orders.values():
        events = await outbox_rows(engine, body["order_id"])
        assert events and body["payment_token"] not in str(events)
    assert card_token not in caplog.text and split_token not in caplog.text


async def test_a_token_sealed_for_another_order_is_refused_and_never_sent(
    settings, saga, product, engine, payment_provider
):
    sku = await product(stock=5)
    order_id = str(uuid.uuid4())
    stolen = Sealer.from_keys(settings.card_keys()).seal("tok_visa", "another-order")

    handle = await saga([(sku, 1)], payment_token=stolen, order_id=order_id)
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()

    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidOrder"
    assert "card token" in cause.message and "tok_visa" not in cause.message
    assert await factories.stock_of(engine, sku) == 5
    async with httpx.AsyncClient(base_url=payment_provider.url) as http:
        held = (await http.get("/v1/payments", params={"order_id": order_id})).json()
    assert held["authorizations"] == []


async def test_a_retried_request_keeps_its_fingerprint_though_each_seal_differs(
    api, client, product
):
    body = {
        "customer_id": factories.customer(),
        "items": [{"sku": await product(), "quantity": 1}],
        "payment_token": f"tok_retry_{uuid.uuid4().hex}",
    }
    headers = {"Idempotency-Key": f"retry-{uuid.uuid4().hex}"}

    first = await api.post("/orders", json=body, headers=headers)
    again = await api.post("/orders", json=body, headers=headers)

    assert (first.status_code, again.status_code) == (202, 200), again.text
    assert again.json()["order_id"] == first.json()["order_id"]
    handle = client.get_workflow_handle(f"order-{first.json()['order_id']}")
    memo = await (await handle.describe()).memo_value("request_hash")
    assert memo == PlaceOrderRequest(**body).fingerprint()  # the request's, token in clear
