"""The dual-write problem, shown: a crash between the two writes of a naive restock loses the
event or leaves a ghost; the outbox path under the same crash loses nothing.

Each restock runs as its own process (`python -m dual_write`), which SIGKILLs
itself between its two writes. Then PostgreSQL and JetStream are read back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import nats as natsio
import pytest
from sqlalchemy import select

from db.tables import products, service_tables
from dual_write.restock import AGGREGATE, EVENT_TYPE, event_id_for
from messaging import wire
from relay.service import run_relay
from wiring.served import RELAYED

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]
ROOT = Path(__file__).resolve().parents[2]
SUBJECT = wire.subject_for(AGGREGATE, EVENT_TYPE)


async def run_restock(settings, nats, mode: str, sku: str, crash: bool) -> tuple[int, str]:
    request_id = uuid.uuid4().hex
    env = {**os.environ, "DATABASE_URL": settings.database_target, "NATS_URL": nats.url}
    argv = [sys.executable, "-m", "dual_write", mode, sku, "5", "--request-id", request_id]
    proc = await asyncio.to_thread(
        subprocess.run, argv + (["--crash"] if crash else []), cwd=ROOT, env=env,
        capture_output=True, timeout=60,
    )  # fmt: skip
    return proc.returncode, event_id_for(request_id)


async def stock_of(engine, sku: str) -> tuple[int, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(products.c.stock, products.c.stock_received).where(products.c.sku == sku)
            )
        ).one()
    return row.stock, row.stock_received


async def copies_in_jetstream(js, event_id: str) -> int:
    """How many messages in the stream carry this event id."""
    sub = await js.pull_subscribe(SUBJECT, durable=None, stream=wire.STREAM)
    found = 0
    try:
        while True:
            try:
                batch = await sub.fetch(200, timeout=2)
            except natsio.errors.TimeoutError:  # the stream is read to its end
                return found
            for msg in batch:
                await msg.ack()
                found += (msg.headers or {}).get(wire.MSG_ID) == event_id
    finally:
        await sub.unsubscribe()


async def test_without_a_crash_both_naive_paths_write_both(settings, nats, js, engine, product):
    sku = await product(stock=10)
    for mode in ("commit-then-publish", "publish-then-commit"):
        code, event_id = await run_restock(settings, nats, mode, sku, crash=False)
        assert code == 0
        assert await copies_in_jetstream(js, event_id) == 1
    assert await stock_of(engine, sku) == (20, 20)


async def test_commit_then_publish_loses_the_event_in_a_crash(settings, nats, js, engine, product):
    sku = await product(stock=10)

    code, event_id = await run_restock(settings, nats, "commit-then-publish", sku, crash=True)

    assert code == -signal.SIGKILL
    assert await stock_of(engine, sku) == (15, 15)  # the stock rose...
    assert await copies_in_jetstream(js, event_id) == 0  # ...and nobody will ever hear of it


async def test_publish_then_commit_leaves_a_ghost_event_in_a_crash(
    settings, nats, js, engine, product
):
    sku = await product(stock=10)

    code, event_id = await run_restock(settings, nats, "publish-then-commit", sku, crash=True)

    assert code == -signal.SIGKILL
    assert await copies_in_jetstream(js, event_id) == 1  # announced...
    assert await stock_of(engine, sku) == (10, 10)  # ...but it never happened


async def test_the_outbox_loses_nothing_in_the_same_crash(settings, nats, js, engine, product):
    sku = await product(stock=10)

    code, event_id = await run_restock(settings, nats, "outbox", sku, crash=True)

    assert code == -signal.SIGKILL
    assert await stock_of(engine, sku) == (15, 15)
    outbox = service_tables["inventory"].outbox
    async with engine.connect() as conn:
        status = await conn.scalar(select(outbox.c.status).where(outbox.c.event_id == event_id))
    assert status == "PENDING"  # committed with the stock, waiting for the relay

    relay_settings = settings.model_copy(
        update={"nats_url": nats.url, "relay_poll_interval_s": 0.2, "relay_metrics_port": 0}
    )
    stop = asyncio.Event()
    relaying = asyncio.create_task(run_relay(relay_settings.relay(), stop, tables=RELAYED))
    try:
        for _ in range(100):
            async with engine.connect() as conn:
                status = await conn.scalar(
                    select(outbox.c.status).where(outbox.c.event_id == event_id)
                )
            if status == "PUBLISHED":
                break
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.wait_for(relaying, 30)

    assert status == "PUBLISHED"
    assert await copies_in_jetstream(js, event_id) == 1
