"""The CDC relay: the outbox read from the WAL, delivered like the polling relay's, and never
lost when the relay is killed between publishing and advancing its slot."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from messaging import wire
from relay.cdc import CdcRelay
from relay.config import config_from
from relay.service import run_relay
from relay.slot import SLOT
from relay.stats import RelayStats
from stack.cli import main
from tests.factories import eventually
from tests.integration.test_relay import (
    messages_for,
    messages_of,
    relay_process,
    statuses,
    write_events,
)
from wiring.served import RELAYED

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cdc_settings(settings, nats):
    return settings.model_copy(
        update={"nats_url": nats.url, "relay_mode": "cdc", "relay_metrics_port": 0}
    )


async def wait_until_reading(engine, relay_task: asyncio.Task[None], stats: RelayStats) -> None:
    """Once a probe event went out and the count stands still, the relay has drained
    the backlog earlier tests left (service by service, the probe's first) and reads
    the slot."""
    probe = await write_events(engine, str(uuid.uuid4()), ["Probe"])
    await eventually(lambda: statuses(engine, probe), lambda s: s == ["PUBLISHED"], deadline_s=30)
    counted = -1
    while stats.published != counted:
        counted = stats.published
        await asyncio.sleep(0.5)
    assert not relay_task.done()


async def test_committed_events_reach_jetstream_from_the_wal_in_order_with_headers(
    engine, js, slot, cdc_settings, monkeypatch, capsys
):
    stop, stats = asyncio.Event(), RelayStats()
    relaying = asyncio.create_task(
        run_relay(cdc_settings.relay(), stop, tables=RELAYED, stats=stats)
    )
    try:
        await wait_until_reading(engine, relaying, stats)
        before = stats.published
        first, second = str(uuid.uuid4()), str(uuid.uuid4())
        ids = await write_events(engine, first, ["OrderCreated", "StockReserved"])
        other = await write_events(engine, second, ["OrderCreated"])
        ids += await write_events(engine, first, ["OrderConfirmed"])
        msgs = await messages_for(js, first, 3)
        [alone] = await messages_for(js, second, 1)
        published = await eventually(
            lambda: statuses(engine, ids + other), lambda s: s == ["PUBLISHED"] * 4
        )
        monkeypatch.setenv("DATABASE_URL", cdc_settings.database_target)
        assert await asyncio.to_thread(main, ["relay-status"]) == 0
        assert "CDC slot saga_outbox: retains" in capsys.readouterr().out
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
    assert stats.published - before == 4  # from the slot: the table is drained only at start
    # Advanced past what was delivered: the slot holds nothing more to decode.
    changes = await slot.fetchval(
        "SELECT count(*) FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,"
        " 'proto_version', '1', 'publication_names', 'saga_outbox')",
        SLOT,
    )
    assert changes == 0


class Died(BaseException):
    """The relay process dying: not an error any handler may catch."""


async def test_a_relay_dying_between_the_ack_and_the_mark_republishes_and_jetstream_drops_it(
    engine, js, slot, cdc_settings
):
    order_ids = [str(uuid.uuid4()) for _ in range(6)]
    ids = [i for o in order_ids for i in await write_events(engine, o, ["A", "B", "C"])]
    config = config_from(cdc_settings.relay())

    class DiesBeforeMarking(CdcRelay):
        async def _settle(self, *_: Any) -> None:
            raise Died

    with pytest.raises(Died):
        await DiesBeforeMarking(slot, engine, js, config, RELAYED.outboxes).pass_once()
    assert set(await statuses(engine, ids)) == {"PENDING"}  # published, never marked

    survivor, totals = CdcRelay(slot, engine, js, config, RELAYED.outboxes), RelayStats()
    while True:
        result = await survivor.pass_once()
        totals.add(result)
        if not result.claimed:
            break

    assert await statuses(engine, ids) == ["PUBLISHED"] * len(ids)
    assert totals.duplicates > 0  # JetStream had them: dropped by Nats-Msg-Id
    assert totals.published == len(ids)
    for order_id in order_ids:
        msgs = await messages_for(js, order_id, 3)
        assert [m.subject.rsplit(".", 1)[1] for m in msgs] == ["A", "B", "C"]


async def test_cdc_relay_sigkilled_under_load_loses_nothing_and_keeps_each_aggregate_in_order(
    engine, js, slot, cdc_settings, tmp_path
):
    start = relay_process(cdc_settings, tmp_path, SAGA_RELAY_MODE="cdc", SAGA_RELAY_BATCH_SIZE="10")

    order_ids: list[str] = []
    ids: list[str] = []
    writing = asyncio.Event()
    writing.set()

    async def writer() -> None:
        while writing.is_set():
            order_id = str(uuid.uuid4())
            order_ids.append(order_id)
            ids.extend(await write_events(engine, order_id, ["A", "B", "C", "D", "E"]))
            await asyncio.sleep(0.02)

    async def published() -> int:
        return (await statuses(engine, list(ids))).count("PUBLISHED")

    first = start()
    load = asyncio.create_task(writer())
    try:
        await eventually(published, lambda n: n >= 50, deadline_s=30)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    killed_at = len(ids)
    second = start()
    try:
        await asyncio.sleep(1.0)  # load on the restarted relay too
        writing.clear()
        await load
        await eventually(published, lambda n: n == len(ids), deadline_s=60)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)

    assert 50 <= killed_at < len(ids)
    seen: dict[str, int] = {}
    for msgs in (await messages_of(js, order_ids, 5)).values():
        assert [m.subject.rsplit(".", 1)[1] for m in msgs] == ["A", "B", "C", "D", "E"]
        for msg in msgs:
            seen[msg.headers[wire.MSG_ID]] = seen.get(msg.headers[wire.MSG_ID], 0) + 1
    assert sorted(seen) == sorted(ids)
    assert set(seen.values()) == {1}
