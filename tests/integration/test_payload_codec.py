"""With a payload codec key, nothing unencrypted is taken: a workflow some client without
the key started is not run; the codec endpoint still shows what Temporal wrote in clear.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory

from api.app import create_app
from domain.two_phase import coordinator_workflow_id
from settings import Settings
from temporal_client import connect
from tests import factories
from tests.conftest import start_saga
from tests.factories import eventually
from wiring.activities import payment_provider_client
from wiring.root import open_bulkheads, running

pytestmark = pytest.mark.timeout(120)
CODEC_KEY = base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
async def encrypting(settings: Settings) -> AsyncIterator[tuple[Settings, Client]]:
    """Workers of their own, all with the codec key, and a client with it."""
    fields = {k: getattr(settings, k) for k in Settings.model_fields}
    fields |= {"payload_codec_key": CODEC_KEY, "task_queue": f"codec-{uuid.uuid4().hex[:8]}"}
    own = Settings(**fields)  # validated, as a process loads them
    client = await connect(own.temporal())
    provider = payment_provider_client(own.provider())
    workers, engines = open_bulkheads(client, own, provider)
    try:
        async with running(workers):
            yield own, client
    finally:
        await provider.aclose()
        for engine in engines.values():
            await engine.dispose()


def payloads_in(message: Message) -> Iterator[Payload]:
    if isinstance(message, Payload):
        yield message
        return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            values = [v for v in value.values() if isinstance(v, Message)]
        else:
            values = list(value) if field.is_repeated else [value]
        for one in values:
            yield from payloads_in(one)


def events_of_type(history: WorkflowHistory, kind: int) -> list[Any]:
    return [e for e in history.events if e.event_type == kind]


async def test_a_workflow_started_without_the_key_is_refused_not_run(
    encrypting, client, product, engine
):
    own, _ = encrypting
    order_id = str(uuid.uuid4())

    # The session's client has no codec: its input reaches the server in clear.
    handle = await start_saga(client, own.task_queue, [(await product(), 1)], order_id=order_id)
    try:
        history = await eventually(
            handle.fetch_history,
            lambda h: bool(events_of_type(h, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED)),
        )
        [failed, *_] = events_of_type(history, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED)
        message = failed.workflow_task_failed_event_attributes.failure.message
        assert "not encrypted" in message and "SAGA_PAYLOAD_CODEC_KEY" in message
        assert events_of_type(history, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == []
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        assert (
            await factories.count(
                engine, "SELECT count(*) FROM orders.orders WHERE order_id = :o", o=order_id
            )
            == 0
        )
    finally:
        await handle.terminate("test over")


async def test_the_codec_endpoint_shows_every_payload_of_an_encrypted_history(
    encrypting, product, engine
):
    own, client = encrypting
    wallet = await factories.insert_wallet(engine, balance=1000)
    handle = await start_saga(
        client, own.task_queue, [(await product(), 1)], customer_id=wallet, store_credit=500
    )
    await handle.result()
    order_id = handle.id.removeprefix("order-")
    sent = [
        payload
        for workflow_id in (handle.id, coordinator_workflow_id(order_id))
        for event in (await client.get_workflow_handle(workflow_id).fetch_history()).events
        for payload in payloads_in(event)
    ]
    # What the SDK and the server write in clear beside the ciphertext.
    clear = [p for p in sent if p.metadata.get("encoding") != b"binary/encrypted"]
    assert any(b"fraud-check" in p.data for p in clear), "no patch marker among the payloads"

    app = create_app(own)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            shown = await http.post(
                "/codec/decode", json={"payloads": [MessageToDict(p) for p in sent]}
            )

    assert shown.status_code == 200, shown.text
    decoded = shown.json()["payloads"]
    assert len(decoded) == len(sent)
    assert all(p["metadata"]["encoding"] != "YmluYXJ5L2VuY3J5cHRlZA==" for p in decoded)
    for before, after in zip(sent, decoded, strict=True):
        if before in clear:
            assert after == MessageToDict(before)
    inputs = [json.loads(base64.b64decode(p["data"])) for p in decoded if "data" in p]
    assert any(isinstance(i, dict) and i.get("order_id") == order_id for i in inputs)
