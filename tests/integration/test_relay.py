"""The outbox relay against real PostgreSQL and NATS JetStream."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats as natsio
import pytest
from sqlalchemy import func, select

from db.relay_ring import ring_relay
from db.tables import order_history, service_tables
from db.unit_of_work import StepContext, event_row, insert_events
from messaging import wire
from relay.service import run_relay
from relay.stats import RelayStats
from settings import Settings
from tests.factories import eventually
from wiring.served import RELAYED
from wiring.services import RELAY_PARTITIONS, SERVICES

pytestmark = pytest.mark.asyncio
ROOT = Path(__file__).resolve().parents[2]


async def write_events(engine, aggregate_id: str, kinds: list[str], **payload: Any) -> list[str]:
    """Commit events the way activities do (one transaction, insert_events, a ring after)."""
    context = StepContext(service_tables["orders"], f"test:{uuid.uuid4()}", f"order-{aggregate_id}")
    rows = [
        event_row(context, "order", aggregate_id, kind, {"order_id": aggregate_id, **payload}, n)
        for n, kind in enumerate(kinds)
    ]
    async with engine.begin() as conn:
        await insert_events(conn, service_tables["orders"].outbox, rows)
    ring_relay(engine, "orders")
    return [r["event_id"] for r in rows]


async def messages_for(js, aggregate_id: str, expected: int, prefix: str = "events") -> list[Any]:
    """Every message about one aggregate in the stream, in stream order."""
    return (await messages_of(js, [aggregate_id], expected, prefix))[aggregate_id]


async def messages_of(
    js, aggregate_ids: list[str], expected: int, prefix: str = "events"
) -> dict[str, list[Any]]:
    """Every message about each aggregate, in stream order, from one read of the stream:
    until each has `expected`, then on to the stream's end, so a duplicate shows."""
    sub = await js.pull_subscribe(f"{prefix}.>", durable=None, stream=wire.STREAM)
    found: dict[str, list[Any]] = {aggregate_id: [] for aggregate_id in aggregate_ids}
    batch_size = 200

    async def more() -> int:
        try:
            batch = await sub.fetch(batch_size, timeout=0.5)
        except natsio.errors.TimeoutError:
            return 0
        for msg in batch:
            await msg.ack()
            aggregate_id = (msg.headers or {}).get(wire.AGGREGATE_ID)
            if aggregate_id in found:
                found[aggregate_id].append(msg)
        return len(batch)

    try:
        last = await eventually(
            more, lambda _: all(len(f) >= expected for f in found.values()), deadline_s=20
        )
        while last == batch_size:  # a full batch: the stream may go on
            last = await more()
    finally:
        await sub.unsubscribe()
    return found


def relay_process(
    settings: Settings, tmp_path: Path, **env: str
) -> Callable[[], subprocess.Popen[bytes]]:
    """Starts `python -m relay` as its own process (to be SIGKILLed), logging to tmp_path."""
    environment = {
        **os.environ,
        "DATABASE_URL": settings.database_target,
        "NATS_URL": settings.nats_target,
        "SAGA_RELAY_METRICS_PORT": "0",
        **env,
    }
    log = (tmp_path / "relay.log").open("ab")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "relay"], cwd=ROOT, env=environment, stdout=log, stderr=log
        )

    return start


async def statuses(engine, event_ids: list[str]) -> list[str]:
    outbox = service_tables["orders"].outbox
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(outbox.c.status).where(outbox.c.event_id.in_(event_ids)).order_by(outbox.c.seq)
        )
        return [r.status for r in rows]


async def test_committed_events_reach_jetstream_in_order_with_headers(engine, js, relay):
    order_id = str(uuid.uuid4())
    ids = await write_events(engine, order_id, ["OrderCreated", "StockReserved", "OrderConfirmed"])

    msgs = await messages_for(js, order_id, 3)

    assert [m.headers[wire.MSG_ID] for m in msgs] == ids
    assert [m.subject for m in msgs] == [
        "events.order.OrderCreated",
        "events.order.StockReserved",
        "events.order.OrderConfirmed",
    ]
    assert msgs[0].headers[wire.CORRELATION_ID] == f"order-{order_id}"
    assert json.loads(msgs[0].data)["payload"]["order_id"] == order_id
    assert await eventually(lambda: statuses(engine, ids), lambda s: s == ["PUBLISHED"] * 3)


async def test_a_transaction_committing_after_a_later_numbered_one_is_not_skipped(
    engine, js, relay
):
    early, late = str(uuid.uuid4()), str(uuid.uuid4())
    context = StepContext(service_tables["orders"], f"test:{uuid.uuid4()}", "c")
    async with engine.connect() as slow:
        await slow.begin()
        # Takes the lower seq, then stays uncommitted while a later row commits.
        await insert_events(
            slow, service_tables["orders"].outbox, [event_row(context, "order", early, "Slow", {})]
        )
        later_ids = await write_events(engine, late, ["Fast"])
        await messages_for(js, late, 1)
        await slow.commit()

    [msg] = await messages_for(js, early, 1)

    assert msg.subject == "events.order.Slow"
    assert await statuses(engine, later_ids) == ["PUBLISHED"]


async def test_each_aggregate_is_published_in_commit_order_under_concurrent_writers(
    engine, js, relay
):
    aggregates = [str(uuid.uuid4()) for _ in range(3)]

    async def writer(aggregate_id: str) -> None:
        context = StepContext(service_tables["orders"], f"test:{uuid.uuid4()}", "c")
        async with engine.begin() as conn:
            # Count under the aggregate's lock: n is this event's place in commit order.
            await conn.execute(
                select(func.pg_advisory_xact_lock(func.hashtext(f"order:{aggregate_id}")))
            )
            outbox = service_tables["orders"].outbox
            n = await conn.scalar(
                select(func.count())
                .select_from(outbox)
                .where(outbox.c.aggregate_id == aggregate_id)
            )
            row = event_row(context, "order", aggregate_id, "Step", {"n": int(n or 0) + 1})
            await insert_events(conn, service_tables["orders"].outbox, [row])

    await asyncio.gather(*(writer(a) for a in aggregates for _ in range(15)))

    for msgs in (await messages_of(js, aggregates, 15)).values():
        assert [json.loads(m.data)["payload"]["n"] for m in msgs] == list(range(1, 16))


async def test_a_poison_event_is_dead_lettered_without_blocking_its_aggregate(engine, js, relay):
    order_id = str(uuid.uuid4())
    # Past NATS's 1 MB max payload: this publish can never succeed.
    [poison] = await write_events(engine, order_id, ["Huge"], blob="x" * 1_100_000)
    [after] = await write_events(engine, order_id, ["Small"])

    state = await eventually(
        lambda: statuses(engine, [poison, after]),
        lambda s: s == ["FAILED", "PUBLISHED"],
        deadline_s=30,
    )

    assert state == ["FAILED", "PUBLISHED"]
    outbox = service_tables["orders"].outbox
    async with engine.connect() as conn:
        failed = (await conn.execute(select(outbox).where(outbox.c.event_id == poison))).one()
    assert failed.attempts == 3
    assert "payload" in failed.last_error.lower()
    [letter] = await messages_for(js, order_id, 1, prefix="deadletter")
    assert letter.subject == "deadletter.order.Huge"
    assert letter.headers["Dead-Letter-Reason"] == failed.last_error


async def test_relay_killed_mid_batch_loses_nothing_and_the_read_model_gets_each_once(
    engine, js, relay_settings, tmp_path
):
    from consumers.order_history import order_history_consumer
    from consumers.service import serve as serve_consumers

    order_ids = [str(uuid.uuid4()) for _ in range(40)]
    ids = [i for o in order_ids for i in await write_events(engine, o, ["A", "B", "C", "D", "E"])]
    start = relay_process(
        relay_settings, tmp_path, SAGA_RELAY_BATCH_SIZE="20", SAGA_RELAY_LEASE_TTL_S="2"
    )

    async def published() -> int:
        return (await statuses(engine, ids)).count("PUBLISHED")

    stop_consumer = asyncio.Event()
    consumer = order_history_consumer(
        name=f"history-{uuid.uuid4().hex[:8]}", filter_subject="events.order.>"
    )
    consuming = asyncio.create_task(
        serve_consumers(
            relay_settings.database_target, relay_settings.nats(), [consumer], stop_consumer
        )
    )
    holder = await engine.connect()
    await holder.begin()
    # The last order's events cannot go out before the kill, however fast the
    # first relay is: the kill always lands with work left.
    outbox = service_tables["orders"].outbox
    await holder.execute(select(outbox.c.seq).where(outbox.c.event_id == ids[-5]).with_for_update())
    first = start()
    try:
        await eventually(published, lambda n: n >= 20, deadline_s=30)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        midway = await published()
        await holder.rollback()
        second = start()
        try:
            await eventually(published, lambda n: n == len(ids), deadline_s=60)
            projected = await eventually(
                lambda: history_rows(engine, order_ids), lambda r: len(r) == len(ids)
            )
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(20)
    finally:
        await holder.close()
        stop_consumer.set()
        await asyncio.wait_for(consuming, 30)

    assert 0 < midway <= len(ids) - 5
    assert sorted(projected) == sorted(ids)  # each event once: event_id is the key
    seen: dict[str, int] = {}
    for msgs in (await messages_of(js, order_ids, 5)).values():
        for msg in msgs:
            seen[msg.headers[wire.MSG_ID]] = seen.get(msg.headers[wire.MSG_ID], 0) + 1
    assert sorted(seen) == sorted(ids)
    assert set(seen.values()) == {1}  # JetStream dropped any re-publish by Nats-Msg-Id


async def history_rows(engine, order_ids: list[str]) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(order_history.c.event_id).where(order_history.c.order_id.in_(order_ids))
        )
        return [str(r.event_id) for r in rows]


async def test_dead_letters_are_listed_and_redriven(engine, js, relay):
    from relay.admin import dead_letters, redrive

    order_id = str(uuid.uuid4())
    [poison] = await write_events(engine, order_id, ["Huge"], blob="x" * 1_100_000)
    await eventually(lambda: statuses(engine, [poison]), lambda s: s == ["FAILED"], deadline_s=30)

    listed = [d.event_id for d in await dead_letters(engine, RELAYED)]
    failures_before = relay.failed
    moved = await redrive(engine, RELAYED, [poison])

    assert poison in listed
    assert moved == 1
    # Back in the queue with fresh attempts: three more tries, then listed again.
    await eventually(
        lambda: asyncio.sleep(0, relay.failed), lambda n: n >= failures_before + 3, deadline_s=30
    )
    assert await statuses(engine, [poison]) == ["FAILED"]


async def test_metrics_report_published_events_lag_and_partitions(engine, relay_settings):
    import httpx

    from stack.ports import free_port

    port = free_port()
    settings = relay_settings.model_copy(update={"relay_metrics_port": port})
    stop, stats = asyncio.Event(), RelayStats()
    task = asyncio.create_task(run_relay(settings.relay(), stop, tables=RELAYED, stats=stats))
    try:
        ids = await write_events(engine, str(uuid.uuid4()), ["A", "B"])
        await eventually(lambda: statuses(engine, ids), lambda s: s == ["PUBLISHED"] * 2)

        async def scrape() -> dict[str, str]:
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            return dict(
                line.rsplit(" ", 1)
                for line in text.splitlines()
                if line and not line.startswith("#")
            )

        # Alone, it ends up holding every partition (a dead instance's lapse first).
        metrics = await eventually(scrape, lambda m: m["saga_relay_partitions_held"] == "64")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    assert int(metrics["saga_relay_events_published_total"]) >= 2
    assert 'saga_relay_lag_seconds{service="orders"}' in metrics


async def test_published_rows_are_pruned_after_the_retention_and_dead_letters_kept(engine, relay):
    from relay.drain import prune_published

    published = await write_events(engine, str(uuid.uuid4()), ["Old"])
    await eventually(lambda: statuses(engine, published), lambda s: s == ["PUBLISHED"])
    context = StepContext(service_tables["orders"], f"test:{uuid.uuid4()}", "c")
    dead = event_row(context, "order", str(uuid.uuid4()), "Dead", {})
    async with engine.begin() as conn:
        await conn.execute(service_tables["orders"].outbox.insert(), [{**dead, "status": "FAILED"}])

    removed = await prune_published(engine, RELAYED.outboxes, retention_s=0)

    assert removed >= 1
    assert await statuses(engine, published) == []
    assert await statuses(engine, [dead["event_id"]]) == ["FAILED"]


async def test_a_broker_outage_delays_events_without_counting_against_them(
    engine, js, relay_settings, nats
):
    stop, stats = asyncio.Event(), RelayStats()
    task = asyncio.create_task(run_relay(relay_settings.relay(), stop, tables=RELAYED, stats=stats))
    try:
        await eventually(lambda: asyncio.sleep(0, stats.passes), lambda n: n > 0)
        await nats.stop()
        order_id = str(uuid.uuid4())
        ids = await write_events(engine, order_id, ["A", "B", "C"])
        await eventually(lambda: asyncio.sleep(0, stats.passes), lambda n: n > 10)
        outbox = service_tables["orders"].outbox
        async with engine.connect() as conn:
            during = (
                await conn.execute(
                    select(outbox.c.status, outbox.c.attempts).where(outbox.c.event_id.in_(ids))
                )
            ).all()
        await nats.start()
        await eventually(
            lambda: statuses(engine, ids), lambda s: s == ["PUBLISHED"] * 3, deadline_s=30
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    assert {(s, a) for s, a in during} == {("PENDING", 0)}
    client = await natsio.connect(nats.url)
    try:
        msgs = await messages_for(client.jetstream(), order_id, 3)
    finally:
        await client.close()
    assert [m.subject.rsplit(".", 1)[1] for m in msgs] == ["A", "B", "C"]


async def test_a_stuck_aggregate_does_not_hold_up_the_others(engine, relay_settings):
    settings = relay_settings.model_copy(update={"relay_batch_size": 5, "relay_max_attempts": 1000})
    stuck, free = str(uuid.uuid4()), str(uuid.uuid4())
    [poison] = await write_events(engine, stuck, ["Huge"], blob="x" * 1_100_000)
    behind = [i for _ in range(10) for i in await write_events(engine, stuck, ["Behind"])]
    [other] = await write_events(engine, free, ["Free"])
    stop, stats = asyncio.Event(), RelayStats()
    task = asyncio.create_task(run_relay(settings.relay(), stop, tables=RELAYED, stats=stats))
    try:
        await eventually(lambda: statuses(engine, [other]), lambda s: s == ["PUBLISHED"])
        held_back = await statuses(engine, [poison, *behind])
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    assert held_back == ["PENDING"] * 11  # in order: nothing overtakes the stuck head
    assert stats.passes < 200  # it waits for the retry instead of spinning


async def test_an_event_held_by_another_transaction_is_not_overtaken(engine, js, relay_settings):
    order_id = str(uuid.uuid4())
    first, second, third = [
        (await write_events(engine, order_id, [kind]))[0] for kind in ("E1", "E2", "E3")
    ]
    outbox = service_tables["orders"].outbox
    stop = asyncio.Event()
    async with engine.connect() as holder:
        await holder.begin()
        # E2 is locked before any relay runs: the pass must claim E1 and E3 and
        # publish only E1.
        await holder.execute(
            select(outbox.c.seq).where(outbox.c.event_id == second).with_for_update()
        )
        task = asyncio.create_task(run_relay(relay_settings.relay(), stop, tables=RELAYED))
        try:
            await eventually(lambda: statuses(engine, [first]), lambda s: s == ["PUBLISHED"])
            await asyncio.sleep(0.5)  # several more passes, each finding E2 locked
            assert await statuses(engine, [third]) == ["PENDING"]
            await holder.rollback()
            msgs = await messages_for(js, order_id, 3)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)

    assert [m.subject.rsplit(".", 1)[1] for m in msgs] == ["E1", "E2", "E3"]


async def test_a_notify_drains_the_outbox_it_names_and_the_poll_drains_the_rest(
    engine, relay_settings
):
    settings = relay_settings.model_copy(update={"relay_poll_interval_s": 3.0})
    stop, stats = asyncio.Event(), RelayStats()
    # Every partition, no leases: a lease changing hands would drain every outbox.
    every = list(range(RELAY_PARTITIONS))
    task = asyncio.create_task(
        run_relay(settings.relay(), stop, tables=RELAYED, partitions=every, stats=stats)
    )
    try:
        # The first round is a poll of every outbox; then the relay sleeps.
        await eventually(lambda: _value(stats.passes), lambda n: n >= len(SERVICES))
        before = stats.passes
        quiet = str(uuid.uuid4())
        context = StepContext(service_tables["orders"], f"test:{uuid.uuid4()}", f"order-{quiet}")
        async with engine.begin() as conn:  # committed with no ring after it
            row = event_row(context, "order", quiet, "Quiet", {"order_id": quiet}, 0)
            await insert_events(conn, service_tables["orders"].outbox, [row])
        [loud] = await _write_inventory_event(engine)
        await eventually(lambda: _statuses_in(engine, "inventory", [loud]), _published)
        await eventually(lambda: _value(stats.passes), lambda n: n > before)  # counted
        # One ring, one pass: over inventory's outbox, not every service's.
        assert stats.passes - before == 1
        assert await statuses(engine, [row["event_id"]]) == ["PENDING"]
        # The poll drains every outbox, and so what no ring named.
        await eventually(lambda: statuses(engine, [row["event_id"]]), _published, deadline_s=10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def _value(n: int) -> int:
    return n


def _published(statuses: list[str]) -> bool:
    return statuses == ["PUBLISHED"]


async def _write_inventory_event(engine) -> list[str]:
    sku = f"sku-{uuid.uuid4().hex[:8]}"
    context = StepContext(service_tables["inventory"], f"test:{uuid.uuid4()}", f"order-{sku}")
    row = event_row(context, "stock", sku, "Loud", {"sku": sku}, 0)
    async with engine.begin() as conn:
        await insert_events(conn, service_tables["inventory"].outbox, [row])
    ring_relay(engine, "inventory")
    return [row["event_id"]]


async def _statuses_in(engine, schema: str, event_ids: list[str]) -> list[str]:
    outbox = service_tables[schema].outbox
    async with engine.connect() as conn:
        rows = await conn.execute(select(outbox.c.status).where(outbox.c.event_id.in_(event_ids)))
        return [r.status for r in rows]
