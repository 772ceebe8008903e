"""Several relay instances: partitions shared by consistent hashing under fenced leases."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from db.tables import relay_leases, service_tables
from relay.ring import assign
from relay.service import run_relay
from relay.stats import RelayStats
from tests.factories import eventually
from tests.integration.test_relay import messages_of, statuses, write_events
from wiring.served import RELAYED
from wiring.services import RELAY_PARTITIONS

pytestmark = pytest.mark.asyncio
ROOT = Path(__file__).resolve().parents[2]


class Relays:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.running: dict[str, tuple[asyncio.Event, asyncio.Task[None], RelayStats]] = {}

    def start(self, name: str) -> RelayStats:
        stop, stats = asyncio.Event(), RelayStats()
        task = asyncio.create_task(
            run_relay(self.settings.relay(), stop, tables=RELAYED, stats=stats, instance_id=name)
        )
        self.running[name] = (stop, task, stats)
        return stats

    async def stop(self, name: str) -> None:
        stop, task, _ = self.running.pop(name)
        stop.set()
        await asyncio.wait_for(task, 30)

    async def stop_all(self) -> None:
        for name in list(self.running):
            await self.stop(name)


@pytest.fixture
async def relays(relay_settings):
    group = Relays(relay_settings)
    yield group
    await group.stop_all()


async def owners(engine) -> dict[int, str | None]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(relay_leases.c.partition, relay_leases.c.owner, relay_leases.c.expires_at)
        )
        now = await conn.scalar(select(func.now()))
        # An expired lease belongs to nobody, whatever its owner column says.
        return {p: (o if expires > now else None) for p, o, expires in rows}


async def settled(engine, names: set[str]) -> dict[int, str | None]:
    """Wait until the leases are exactly the ring's assignment for these members."""
    expected = assign(names, RELAY_PARTITIONS)
    return await eventually(lambda: owners(engine), lambda o: o == expected, deadline_s=30)


async def spread(engine, count: int, owner: dict[int, str | None]) -> list[str]:
    """`count` order ids whose partitions cover every owner at least once."""
    # The outbox's own partition expression (db.tables), on rows of aggregate type "order".
    computed = service_tables["orders"].outbox.c.partition.computed
    assert computed is not None
    partitions = text(
        f"SELECT {computed.sqltext} FROM (SELECT 'order' AS aggregate_type,"
        " unnest(CAST(:ids AS text[])) AS aggregate_id) AS outbox"
    )
    while True:
        ids = [str(uuid.uuid4()) for _ in range(count)]
        async with engine.connect() as conn:
            parts = (await conn.scalars(partitions, {"ids": ids})).all()
        if {owner[p] for p in parts} == set(owner.values()):
            return ids


async def test_three_instances_share_partitions_and_keep_each_aggregate_in_order(
    engine, js, relays
):
    stats = [relays.start(name) for name in ("r1", "r2", "r3")]
    owner = await settled(engine, {"r1", "r2", "r3"})
    # 30 aggregates over 64 partitions, drawn so that every instance owns some.
    aggregates = await spread(engine, 30, owner)

    async def writer(aggregate_id: str) -> None:
        for n in range(1, 6):
            await write_events(engine, aggregate_id, ["Step"], n=n)

    await asyncio.gather(*(writer(a) for a in aggregates))

    for msgs in (await messages_of(js, aggregates, 5)).values():
        assert [json.loads(m.data)["payload"]["n"] for m in msgs] == list(range(1, 6))
    assert sum(s.duplicates for s in stats) == 0
    assert all(s.published > 0 for s in stats)


async def test_a_stopped_instance_hands_over_only_its_own_partitions(engine, relays):
    for name in ("r1", "r2", "r3"):
        relays.start(name)
    before = await settled(engine, {"r1", "r2", "r3"})

    await relays.stop("r3")
    after = await settled(engine, {"r1", "r2"})

    moved = {p for p in range(RELAY_PARTITIONS) if before[p] != after[p]}
    assert moved == {p for p, owner in before.items() if owner == "r3"}


async def test_a_killed_instance_is_taken_over_at_lease_expiry_and_nothing_is_lost(
    engine, relays, relay_settings, tmp_path
):
    with (tmp_path / "killed.log").open("ab") as log:
        victim = subprocess.Popen(  # noqa: ASYNC220 - only forks
            [sys.executable, "-m", "relay"],
            cwd=ROOT,
            env=relay_env(relay_settings),
            stdout=log,
            stderr=log,
        )
    try:
        relays.start("r1")
        await eventually(
            lambda: owners(engine),
            lambda o: len({v for v in o.values() if v}) == 2 and None not in o.values(),
            deadline_s=30,
        )
        victim.send_signal(signal.SIGKILL)  # no goodbye: its leases must lapse
        victim.wait(10)
        ids = [i for _ in range(10) for i in await write_events(engine, str(uuid.uuid4()), ["E"])]

        await settled(engine, {"r1"})
    finally:
        if victim.poll() is None:
            victim.kill()

    assert await eventually(
        lambda: statuses(engine, ids), lambda s: s == ["PUBLISHED"] * len(ids), deadline_s=30
    )


def relay_env(settings: Any) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": settings.database_target,
        "NATS_URL": settings.nats_target,
        "SAGA_RELAY_LEASE_TTL_S": "2",
        "SAGA_RELAY_POLL_INTERVAL_S": "0.2",
        "SAGA_RELAY_METRICS_PORT": "0",
    }


async def test_an_instance_paused_past_its_lease_neither_publishes_nor_marks_after_waking(
    engine, relays, relay_settings, tmp_path
):
    log_path = tmp_path / "paused.log"
    env = {
        **os.environ,
        "DATABASE_URL": relay_settings.database_target,
        "NATS_URL": relay_settings.nats_target,
        "SAGA_RELAY_LEASE_TTL_S": "2",
        "SAGA_RELAY_METRICS_PORT": "0",
        "SAGA_RELAY_POLL_INTERVAL_S": "0.2",
    }
    with log_path.open("ab") as log:
        paused = subprocess.Popen(  # noqa: ASYNC220 - only forks
            [sys.executable, "-m", "relay"], cwd=ROOT, env=env, stdout=log, stderr=log
        )
    try:
        relays.start("steady")
        await eventually(
            lambda: owners(engine),
            lambda o: len({v for v in o.values() if v}) == 2 and None not in o.values(),
            deadline_s=30,
        )
        paused.send_signal(signal.SIGSTOP)
        ids = [i for _ in range(20) for i in await write_events(engine, str(uuid.uuid4()), ["E"])]
        await settled(engine, {"steady"})  # the paused instance's leases lapsed
        await eventually(
            lambda: statuses(engine, ids), lambda s: s == ["PUBLISHED"] * len(ids), deadline_s=30
        )
        paused.send_signal(signal.SIGCONT)
        # Awake again: it finds its leases gone and rejoins the ring afresh.
        await eventually(
            lambda: asyncio.sleep(0, log_path.read_text()),
            lambda text: "expired before renewal" in text or "lost leases" in text,
            deadline_s=30,
        )
    finally:
        paused.send_signal(signal.SIGCONT)
        paused.send_signal(signal.SIGTERM)
        paused.wait(20)

    assert "published twice" not in log_path.read_text()
    assert relays.running["steady"][2].duplicates == 0
