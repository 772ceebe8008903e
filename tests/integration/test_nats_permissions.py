"""The compose stack's NATS permissions, on a real nats-server started with the very
file docker-compose.yml mounts (deploy/nats/nats-server.conf), its passwords
from the environment as the compose file passes them.

Each process logs in the way it does in production (messaging.connection.connect,
the relay's and the consumers', with SAGA_NATS_USER / SAGA_NATS_PASSWORD) and
the test checks what the broker then lets it do: the relay publishes events and
dead letters; the consumers and choreography users bind, read and acknowledge
their own durables, and can neither forge an event nor touch the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.errors
import nats.js.errors
import pytest
from nats.js import JetStreamContext
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from choreography.handlers import Reactions
from choreography.service import OPTIONS, service_consumers
from consumers import service as consumer_process
from consumers.consumer import Consumer, RunnerOptions
from consumers.metrics import ConsumerMetrics
from consumers.order_history import order_history_consumer
from consumers.runner import ConsumerRunner
from db.tables import order_history
from messaging import connection, wire
from messaging.stream import ensure_stream, stream_config
from messaging.wire import Envelope
from relay.drain import connect_broker
from security.sealed import Sealer
from settings import Settings
from stack.nats import NatsAuth, NatsServer
from stack.ports import LOOPBACK, free_port
from tests.factories import eventually
from tests.prometheus import samples
from wiring.activities import provider_retry
from wiring.served import INBOX, OWNERS
from wiring.services import OWNER_OF_AGGREGATE, SERVICES

pytestmark = pytest.mark.asyncio

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "nats-server.conf"
USERS = ("relay", "consumers", "choreography")
CONSUMER_USERS = ("consumers", "choreography")
FORGED = wire.subject_for("order", "OrderCancelled")


@pytest.fixture(scope="module")
def passwords() -> dict[str, str]:
    return {user: secrets.token_hex(16) for user in USERS}


@pytest.fixture(scope="module")
async def secured(
    tmp_path_factory: pytest.TempPathFactory, passwords: dict[str, str]
) -> AsyncIterator[NatsServer]:
    root = tmp_path_factory.mktemp("nats-auth")
    env = {f"NATS_{user.upper()}_PASSWORD": password for user, password in passwords.items()}
    auth = NatsAuth(CONFIG, env, probe_user="relay", probe_password=passwords["relay"])
    server = NatsServer(free_port(), root / "store", root / "logs", auth)
    await server.start()
    yield server
    await server.stop()


def login(settings: Settings, server: NatsServer, user: str, password: str) -> Settings:
    return settings.model_copy(
        update={"nats_url": server.url, "nats_user": user, "nats_password": SecretStr(password)}
    )


@pytest.fixture
async def relay_js(
    settings: Settings, secured: NatsServer, passwords: dict[str, str]
) -> AsyncIterator[JetStreamContext]:
    """The relay's connection, with the stream in place (only the relay may make it)."""
    relay = login(settings, secured, "relay", passwords["relay"])
    client = await connect_broker(relay.nats(), asyncio.Event())
    assert client is not None
    js = client.jetstream()
    await ensure_stream(js)
    yield js
    await client.close()


@pytest.fixture
async def as_user(
    settings: Settings, secured: NatsServer, passwords: dict[str, str], relay_js: JetStreamContext
) -> AsyncIterator[Any]:
    """`await as_user("consumers")`: a JetStream context logged in as a consumer process does."""
    clients: list[Any] = []

    async def connect(user: str) -> JetStreamContext:
        own = login(settings, secured, user, passwords[user])
        client = await connection.connect(own.nats(), "saga-consumers", asyncio.Event())
        assert client is not None
        clients.append(client)
        return client.jetstream(timeout=2)  # a refusal is a timeout: keep it short

    yield connect
    for client in clients:
        await client.close()


def envelope(aggregate: str, event: str, order_id: str) -> Envelope:
    return Envelope(
        event_id=str(uuid.uuid4()),
        source=OWNER_OF_AGGREGATE[aggregate],
        aggregate_type=aggregate,
        aggregate_id=order_id,
        event_type=event,
        payload={"order_id": order_id},
        headers={"correlation_id": f"order-{order_id}"},
        occurred_at=datetime.now(UTC),
    )


async def publish(js: JetStreamContext, sent: Envelope) -> int:
    subject = wire.subject_for(sent.aggregate_type, sent.event_type)
    headers = {wire.MSG_ID: sent.event_id}
    ack = await js.publish(subject, sent.model_dump_json().encode(), headers=headers, timeout=5)
    return ack.seq


async def stored_on(js: JetStreamContext, subject: str) -> int:
    info = await js.stream_info(wire.STREAM, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


def violations(caplog: pytest.LogCaptureFixture, subject: str) -> list[str]:
    wanted = f'permissions violation for publish to "{subject.lower()}"'
    return [r.getMessage() for r in caplog.records if wanted in r.getMessage().lower()]


async def test_a_client_without_credentials_is_refused(secured):
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(secured.url, allow_reconnect=False, max_reconnect_attempts=1)


async def test_a_wrong_password_is_refused_and_said_so(settings, secured, caplog):
    """The process keeps trying (an operator may fix the password) and logs why."""
    wrong = login(settings, secured, "consumers", "not-the-password")
    stop = asyncio.Event()

    with caplog.at_level(logging.WARNING, logger=connection.__name__):
        connecting = asyncio.create_task(connection.connect(wrong.nats(), "saga-consumers", stop))

        async def refusals() -> list[str]:
            return [
                r.getMessage()
                for r in caplog.records
                if "Authorization Violation" in r.getMessage()
            ]

        await eventually(refusals, bool)
        stop.set()
        assert await asyncio.wait_for(connecting, 10) is None
    assert not any("not-the-password" in r.getMessage() for r in caplog.records)


async def test_the_relay_publishes_events_and_dead_letters(relay_js):
    order_id = str(uuid.uuid4())
    before = await stored_on(relay_js, FORGED)

    await publish(relay_js, envelope("order", "OrderCancelled", order_id))
    letter = wire.dead_letter_subject_for("order", "OrderCancelled")
    await relay_js.publish(letter, b"{}", timeout=5)

    assert await stored_on(relay_js, FORGED) == before + 1
    assert await stored_on(relay_js, letter) >= 1


@pytest.mark.parametrize("user", CONSUMER_USERS)
async def test_a_consumer_process_cannot_publish_an_event(relay_js, as_user, user, caplog):
    js = await as_user(user)
    before = await stored_on(relay_js, FORGED)
    forged = envelope("order", "OrderCancelled", str(uuid.uuid4()))

    with caplog.at_level(logging.WARNING, logger=connection.__name__):
        with pytest.raises((TimeoutError, nats.errors.Error)):
            await js.publish(FORGED, forged.model_dump_json().encode(), timeout=1)

        async def reported() -> list[str]:
            return violations(caplog, FORGED)

        await eventually(reported, bool)

    assert await stored_on(relay_js, FORGED) == before


@pytest.mark.parametrize("user", CONSUMER_USERS)
async def test_a_consumer_process_cannot_change_purge_or_delete_the_stream(relay_js, as_user, user):
    js = await as_user(user)
    await publish(relay_js, envelope("order", "OrderCreated", str(uuid.uuid4())))
    before = await relay_js.stream_info(wire.STREAM)

    refused = (TimeoutError, nats.errors.Error)
    with pytest.raises(refused):
        await js.delete_stream(wire.STREAM)
    with pytest.raises(refused):
        await js.purge_stream(wire.STREAM)
    with pytest.raises(refused):
        await js.update_stream(stream_config(max_age_s=1.0))

    after = await relay_js.stream_info(wire.STREAM)
    assert after.state.messages == before.state.messages > 0
    assert after.config.max_age == before.config.max_age
    assert after.config.subjects == before.config.subjects


async def test_the_consumers_process_projects_through_its_own_durable(
    settings, secured, passwords, relay_js, as_user, engine
):
    own = login(settings, secured, "consumers", passwords["consumers"])
    order_id = str(uuid.uuid4())
    sent = envelope("order", "OrderCreated", order_id)
    seq = await publish(relay_js, sent)

    page = await serving(
        own, [order_history_consumer()], await as_user("consumers"), {"order-history": seq}
    )

    assert await projected(engine, order_id) == [sent.event_id]
    assert samples(page, "saga_consumer_pending_messages", consumer="order-history") == [0]


async def test_the_choreography_process_binds_and_acks_each_services_durable(
    settings, secured, passwords, relay_js, as_user, provider_client
):
    own = login(settings, secured, "choreography", passwords["choreography"])
    reactions = Reactions(
        provider_client, provider_retry(settings.provider()), Sealer(os.urandom(32))
    )
    # One event each service reacts to; none choreographed, so each is acked unapplied.
    sent = {
        "inventory": envelope("order", "OrderCreated", str(uuid.uuid4())),
        "payments": envelope("reservation", "StockReserved", str(uuid.uuid4())),
        "shipping": envelope("payment", "PaymentCaptured", str(uuid.uuid4())),
        "orders": envelope("shipment", "ShipmentCreated", str(uuid.uuid4())),
    }
    seqs = {f"choreography-{svc}": await publish(relay_js, event) for svc, event in sent.items()}

    consumers = service_consumers(reactions, SERVICES)
    page = await serving(own, consumers, await as_user("choreography"), seqs, OPTIONS)

    for name in seqs:
        assert samples(page, "saga_consumer_pending_messages", consumer=name) == [0]
        assert samples(page, "saga_consumer_messages_total", consumer=name, outcome="skipped")


@pytest.mark.parametrize(
    ("user", "owner", "other"),
    [
        ("consumers", "choreography", "choreography-payments"),
        ("choreography", "consumers", "order-history"),
    ],
)
async def test_a_consumer_process_cannot_take_anothers_durable(as_user, engine, user, owner, other):
    js, owners = await as_user(user), await as_user(owner)
    taken = Consumer(
        other,
        wire.subject_for("order", "OrderCancelled"),
        _never,
        inbox=INBOX,
        owners=OWNERS,
    )

    with pytest.raises((TimeoutError, nats.errors.Error)):
        await asyncio.wait_for(ConsumerRunner(js, engine, taken).bind(), 10)

    try:
        info = await owners.consumer_info(wire.STREAM, other)
    except nats.js.errors.NotFoundError:
        return  # never made
    assert info.config.filter_subject != taken.filter_subject  # the owner's, untouched


async def serving(
    settings: Settings,
    consumers: list[Consumer],
    js: JetStreamContext,
    seqs: dict[str, int],
    options: RunnerOptions | None = None,
) -> str:
    """Run the consumer process (consumers.service.serve) as `settings`' user until each
    durable has nothing left and has acknowledged its `seqs`; its metrics page then."""
    port, stop = free_port(), asyncio.Event()
    metrics = ConsumerMetrics(LOOPBACK, port)
    task = asyncio.create_task(
        consumer_process.serve(
            settings.database_target, settings.nats(), consumers, stop, options, metrics=metrics
        )
    )

    async def backlog() -> dict[str, Any]:
        if task.done():
            task.result()  # the process's own failure, rather than a timeout
        found = {}
        for name in seqs:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                found[name] = await js.consumer_info(wire.STREAM, name)
        return found

    def done(infos: dict[str, Any]) -> bool:
        return len(infos) == len(seqs) and all(
            i.ack_floor.stream_seq >= seqs[n] and not i.num_pending and not i.num_ack_pending
            for n, i in infos.items()
        )

    try:
        await eventually(backlog, done)
        async with httpx.AsyncClient() as http:
            return (await http.get(f"http://{LOOPBACK}:{port}/metrics")).text
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def projected(engine: AsyncEngine, order_id: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(order_history.c.event_id).where(order_history.c.order_id == order_id)
        )
        return [str(r.event_id) for r in rows]


async def _never(*_: Any) -> None:
    raise AssertionError("no message should reach this consumer")
