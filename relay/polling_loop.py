"""The polling relay's loop: wake on NOTIFY or on the poll, drain every outbox it serves.

Hybrid wake-up (`SAGA_RELAY_MODE=hybrid`): the NOTIFY a writer rings right
after its commit (db.relay_ring) reaches the relay within a millisecond on one
machine, and a poll every `relay_poll_interval_s` catches whatever a
notification missed — a listener reconnecting after a PostgreSQL restart, rows
of XA branches committed while the relay was down. `poll` mode is the poll
alone. Published rows older than the retention are pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import asyncpg

from db.engine import asyncpg_dsn, create_engine
from db.kit_tables import RelayTables
from db.relay_ring import OUTBOX_CHANNEL
from messaging.stream import ensure_stream
from relay import metrics
from relay.config import config_from
from relay.drain import PRUNE_EVERY_S, connect_broker, drain, prune
from relay.leases import PartitionLeases, new_instance_id
from relay.pass_connection import PassConnection
from relay.stats import RelayStats
from security.nats_login import connection_name
from settings_slices import RelaySettings

log = logging.getLogger(__name__)


class Wakeup:
    """What woke the relay since it last looked: the services whose commits NOTIFY
    named. A NOTIFY wakes a drain of those outboxes only; the poll drains them all.

    One future and one timer a sleep: at the saga bench's rate the relay wakes
    once an event, and a wait on two events with a timeout (two tasks, a
    `wait_for`) cost it about 0.3 ms of CPU a wake-up."""

    def __init__(self) -> None:
        self._named: set[str] = set()
        self._asleep: asyncio.Future[None] | None = None
        self._interrupted = False
        self._heeds_rings = True

    def notified(self, service: str) -> None:
        self._named.add(service)
        if self._heeds_rings:
            self._wake()

    def interrupt(self) -> None:
        """End the current sleep, and any later one, at once (the relay stops)."""
        self._interrupted = True
        self._wake()

    def rung(self) -> bool:
        return bool(self._named)

    def take(self) -> set[str]:
        named, self._named = self._named, set()
        return named

    async def sleep(self, timeout: float) -> None:  # noqa: ASYNC109
        """Until a NOTIFY, an interrupt or `timeout` seconds, whichever comes first."""
        if not self._named:
            await self._sleep(timeout, heed_rings=True)

    async def linger(self, seconds: float) -> None:
        """`seconds`, or until an interrupt: rings heard meanwhile wait for the next take."""
        await self._sleep(seconds, heed_rings=False)

    async def _sleep(self, seconds: float, *, heed_rings: bool) -> None:
        if self._interrupted:
            return
        loop = asyncio.get_running_loop()
        self._asleep = asleep = loop.create_future()
        self._heeds_rings = heed_rings
        timer = loop.call_later(seconds, _resolve, asleep)
        try:
            await asleep
        finally:
            timer.cancel()
            self._asleep = None
            self._heeds_rings = True

    def _wake(self) -> None:
        if self._asleep is not None:
            _resolve(self._asleep)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def run_polling(
    relay_settings: RelaySettings,
    stop: asyncio.Event,
    stats: RelayStats,
    partitions: Sequence[int] | None,
    instance_id: str | None,
    tables: RelayTables,
) -> None:
    """Publish `tables`' outboxes until `stop`. With `partitions` given, work on
    exactly those and take no leases (one instance alone); by default share all
    partitions with the other instances by leases."""
    # Long enough for a pass that waits on slow acks, short enough that a
    # process paused inside a pass frees its partitions soon; a claim outlives
    # the claimer's lease, so a takeover never claims rows still in flight.
    ttl_ms = int(max(relay_settings.lease_ttl_s, 3 * relay_settings.publish_timeout_s) * 1000)
    config = replace(config_from(relay_settings), claim_ttl_s=ttl_ms / 1000)
    engine = create_engine(
        relay_settings.database_url, pool_size=4, idle_in_transaction_timeout_ms=ttl_ms
    )
    leases = (
        PartitionLeases(
            engine, tables, instance_id or new_instance_id(), relay_settings.lease_ttl_s
        )
        if partitions is None
        else None
    )
    client = await connect_broker(relay_settings.nats, stop)
    if client is None:
        await engine.dispose()
        return
    wake = Wakeup()
    stopping = asyncio.ensure_future(_interrupt_on(stop, wake))
    passes = PassConnection(engine)
    listener: asyncpg.Connection | None = None
    held = (lambda: len(leases.partitions())) if leases is not None else (lambda: tables.partitions)
    exporter = await metrics.export(relay_settings.metrics, engine, tables, stats, held)
    try:
        js = client.jetstream()
        await ensure_stream(js, replicas=relay_settings.stream_replicas)
        log.info(
            "relay %s publishing %s to %s",
            leases.instance_id if leases else "(all partitions)",
            ", ".join(tables.services),
            connection_name(client, relay_settings.nats),
        )
        last_prune = 0.0
        last_poll = 0.0
        busy: set[str] = set()
        held_before: Sequence[int] | None = None
        while not stop.is_set():
            if relay_settings.mode == "hybrid" and (listener is None or listener.is_closed()):
                listener = await _listen(relay_settings.database_url, wake)
            if leases is not None and leases.due():
                await _heartbeat(leases, relay_settings.poll_interval_s)
            # Taken before draining: a commit during the drain wakes the next round.
            named = wake.take()
            mine = leases.partitions() if leases is not None else partitions
            # Partitions just taken over may hold anything: drain them all at once.
            polled = (
                time.monotonic() - last_poll >= relay_settings.poll_interval_s
                or mine != held_before
            )
            held_before = mine
            if polled and mine:
                last_poll = time.monotonic()
            outboxes = [
                table
                for table in tables.outboxes
                if polled or table.schema in named or table.schema in busy
            ]
            busy = await drain(passes, js, outboxes, mine, config, stats, leases) if mine else set()
            if time.monotonic() - last_prune > PRUNE_EVERY_S:
                await prune(engine, tables.outboxes, relay_settings.retention_s)
                last_prune = time.monotonic()
            if busy:
                continue  # a full batch went out: more is waiting
            asleep = relay_settings.poll_interval_s
            if mine:
                asleep = max(last_poll + asleep - time.monotonic(), 0.0)
            if leases is not None:
                asleep = min(asleep, leases.renew_in())
            await wake.sleep(asleep)
            if wake.rung() and relay_settings.notify_batch_ms > 0 and not stop.is_set():
                # Woken by a commit: let the commits right behind it join its pass. A
                # pass costs about 0.5 ms of CPU whatever it carries (bench.relay_throughput).
                await wake.linger(relay_settings.notify_batch_ms / 1000)
    finally:
        stopping.cancel()
        if exporter is not None:
            exporter.close()
        if leases is not None:
            with contextlib.suppress(Exception):  # others take over at expiry anyway
                await leases.leave()
        if listener is not None and not listener.is_closed():
            await listener.close()
        with contextlib.suppress(Exception):  # a broker already gone cannot be drained
            await client.drain()
        await passes.close()
        await engine.dispose()


async def _heartbeat(leases: PartitionLeases, retry_in_s: float) -> None:
    try:
        await leases.heartbeat()
    except Exception:  # PostgreSQL away: our leases lapse and partitions() goes empty
        log.exception("lease heartbeat failed")
        leases.retry_heartbeat_in(retry_in_s)


async def _listen(database_url: str, wake: Wakeup) -> asyncpg.Connection | None:
    def heard(_connection: Any, _pid: int, _channel: str, service: str) -> None:
        wake.notified(service)

    try:
        connection = await asyncpg.connect(asyncpg_dsn(database_url), timeout=5)
        await connection.add_listener(OUTBOX_CHANNEL, heard)
        return connection
    except Exception as err:  # polling carries on without the listener
        log.warning("cannot LISTEN for outbox commits (%s); polling only", err)
        return None


async def _interrupt_on(stop: asyncio.Event, wake: Wakeup) -> None:
    await stop.wait()
    wake.interrupt()
