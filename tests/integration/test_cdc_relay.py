"""The CDC relay: the outbox read from the WAL, delivered like the polling relay's, and never
lost when the relay is killed between publishing and advancing its slot."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from domain import events as wire
from relay.cdc import SLOT, ensure_slot, retained_wal_bytes
from relay.service import RelayStats, asyncpg_dsn, run_relay
from stack.cli import main
from tests.factories import eventually
from tests.integration.test_relay import messages_for, statuses, write_events

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def slot(settings) -> AsyncIterator[asyncpg.Connection]:
    """The replication slot, created before the test writes; dropped after, so it
    holds back no WAL for the rest of the session."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_target))
    await ensure_slot(conn)
    yield conn
    for _ in range(50):  # a relay process just stopped may still hold it a moment
        try:
            await conn.execute("SELECT pg_drop_replication_slot($1)", SLOT)
            break
        except asyncpg.ObjectInUseError:
            await asyncio.sleep(0.2)
    await conn.close()


@pytest.fixture
def cdc_settings(settings, nats):
    return settings.model_copy(
        update={"nats_url": nats.url, "relay_mode": "cdc", "relay_metrics_port": 0}
    )


async def test_committed_events_reach_jetstream_from_the_wal_in_order_with_headers(
    engine, js, slot, cdc_settings, monkeypatch, capsys
):
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    ids = await write_events(engine, first, ["OrderCreated", "StockReserved"])
    other = await write_events(engine, second, ["OrderCreated"])
    ids += await write_events(engine, first, ["OrderConfirmed"])
    assert await retained_wal_bytes(slot) > 0  # written, not yet delivered
    monkeypatch.setenv("DATABASE_URL", cdc_settings.database_target)
    assert await asyncio.to_thread(main, ["relay-status"]) == 0
    assert "CDC slot saga_outbox: retains" in capsys.readouterr().out

    stop, stats = asyncio.Event(), RelayStats()
    relaying = asyncio.create_task(run_relay(cdc_settings, stop, stats=stats))
    try:
        msgs = await messages_for(js, first, 3)
        [alone] = await messages_for(js, second, 1)
        published = await eventually(
            lambda: statuses(engine, ids + other), lambda s: s == ["PUBLISHED"] * 4
        )
    finally:
        stop.set()
        await asyncio.wait_for(relaying, 30)

    assert published == ["PUBLISHED"] * 4
    assert [m.headers[wire.MSG_ID] for m in msgs] == ids
    assert [m.subject for m in msgs] == [
        "events.order.OrderCreated",
        "events.order.StockReserved",
        "events.order.OrderConfirmed",
    ]
    assert msgs[0].headers[wire.CORRELATION_ID] == f"order-{first}"
    assert json.loads(msgs[0].data)["payload"]["order_id"] == first
    assert alone.headers[wire.MSG_ID] == other[0]
    assert stats.published == 4
    # Advanced past what was delivered: the slot holds nothing more to decode.
    changes = await slot.fetchval(
        "SELECT count(*) FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,"
        " 'proto_version', '1', 'publication_names', 'saga_outbox')",
        SLOT,
    )
    assert changes == 0


async def test_cdc_relay_killed_mid_stream_loses_nothing_and_jetstream_drops_the_repeats(
    engine, js, slot, cdc_settings, tmp_path
):
    order_ids = [str(uuid.uuid4()) for _ in range(40)]
    ids = [i for o in order_ids for i in await write_events(engine, o, ["A", "B", "C", "D", "E"])]
    env = {
        **os.environ,
        "DATABASE_URL": cdc_settings.database_target,
        "NATS_URL": cdc_settings.nats_target,
        "SAGA_RELAY_MODE": "cdc",
        "SAGA_RELAY_BATCH_SIZE": "10",
        "SAGA_RELAY_METRICS_PORT": "0",
    }
    log = (tmp_path / "relay.log").open("ab")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "relay"], cwd=ROOT, env=env, stdout=log, stderr=log
        )

    async def published() -> int:
        return (await statuses(engine, ids)).count("PUBLISHED")

    first = start()
    try:
        await eventually(published, lambda n: n >= 20, deadline_s=30)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    midway = await published()
    second = start()
    try:
        await eventually(published, lambda n: n == len(ids), deadline_s=60)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)

    assert 0 < midway < len(ids)
    seen: dict[str, int] = {}
    for order_id in order_ids:
        msgs = await messages_for(js, order_id, 5)
        assert [m.subject.rsplit(".", 1)[1] for m in msgs] == ["A", "B", "C", "D", "E"]
        for msg in msgs:
            seen[msg.headers[wire.MSG_ID]] = seen.get(msg.headers[wire.MSG_ID], 0) + 1
    assert sorted(seen) == sorted(ids)
    assert set(seen.values()) == {1}  # republished after the kill, dropped by Nats-Msg-Id
