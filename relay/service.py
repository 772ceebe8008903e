"""The relay process: wake on NOTIFY or on the poll, drain every service's outbox.

`SAGA_RELAY_MODE`: `hybrid` (the default, below), `poll` (no NOTIFY: the poll
alone), or `cdc` (relay.cdc: the outbox read from the WAL instead).

Hybrid wake-up: a NOTIFY sent in each outbox-writing transaction reaches the
relay at commit (sub-millisecond on one machine), and a poll every
`relay_poll_interval_s` catches whatever a notification missed — a listener
reconnecting after a PostgreSQL restart, rows of XA branches committed while the
relay was down. Published rows older than the retention are pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import nats
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine
from db.tables import RELAY_PARTITIONS, SERVICES
from db.unit_of_work import OUTBOX_CHANNEL
from observability.endpoint import serve as serve_metrics
from relay import metrics
from relay.admin import prune_published
from relay.cdc import Chores, run_cdc_relay
from relay.leases import PartitionLeases, new_instance_id
from relay.polling import relay_pass
from relay.publisher import PassResult, RelayConfig
from security.nats_login import connection_name, login_options
from settings import Settings

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 60.0


@dataclass
class RelayStats:
    published: int = 0
    failed: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    passes: int = 0
    lag_ms: list[float] = field(default_factory=list)

    def add(self, result: PassResult) -> None:
        self.published += result.published
        self.failed += result.failed
        self.dead_lettered += result.dead_lettered
        self.duplicates += result.duplicates
        self.passes += 1
        self.lag_ms.extend(result.lag_ms)


class Wakeup:
    """What woke the relay since it last looked: the services whose commits NOTIFY
    named. A NOTIFY wakes a drain of those outboxes only; the poll drains them all."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self._named: set[str] = set()

    def notified(self, service: str) -> None:
        self._named.add(service)
        self.event.set()

    def take(self) -> set[str]:
        named, self._named = self._named, set()
        self.event.clear()
        return named


def config_from(settings: Settings) -> RelayConfig:
    return RelayConfig(
        batch_size=settings.relay_batch_size,
        publish_timeout_s=settings.relay_publish_timeout_s,
        max_attempts=settings.relay_max_attempts,
    )


async def connect_nats(settings: Settings) -> Any:
    # Keep reconnecting for ever: a relay outlives broker restarts.
    return await nats.connect(
        settings.nats_target,
        **login_options(settings),
        name="saga-relay",
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        # No buffering while disconnected: a publish the relay saw fail must not
        # be flushed later, behind events published since, as a late duplicate.
        pending_size=0,
    )


async def run_relay(
    settings: Settings,
    stop: asyncio.Event,
    *,
    partitions: Sequence[int] | None = None,
    stats: RelayStats | None = None,
    instance_id: str | None = None,
) -> None:
    """Run until `stop`. With `partitions` given, work on exactly those and take no
    leases (one instance alone); by default share all partitions with the other
    instances by leases."""
    from messaging.stream import ensure_stream

    stats = stats if stats is not None else RelayStats()
    if settings.relay_mode == "cdc":
        await _run_cdc(settings, stop, stats)
        return
    config = config_from(settings)
    # Long enough for a pass that waits on slow acks, short enough that a
    # process paused inside a pass frees its partitions soon.
    ttl_ms = int(max(settings.relay_lease_ttl_s, 3 * settings.relay_publish_timeout_s) * 1000)
    engine = create_engine(
        settings.database_target, pool_size=4, idle_in_transaction_timeout_ms=ttl_ms
    )
    leases = (
        PartitionLeases(engine, instance_id or new_instance_id(), settings.relay_lease_ttl_s)
        if partitions is None
        else None
    )
    client = await connect_nats(settings)
    wake = Wakeup()
    listener: asyncpg.Connection | None = None
    exporter = await _export_metrics(settings, engine, stats, leases)
    try:
        js = client.jetstream()
        await ensure_stream(js)
        log.info(
            "relay %s publishing %s to %s",
            leases.instance_id if leases else "(all partitions)",
            ", ".join(SERVICES),
            connection_name(client, settings),
        )
        last_prune = 0.0
        last_poll = 0.0
        busy: set[str] = set()
        held: Sequence[int] | None = None
        while not stop.is_set():
            if settings.relay_mode == "hybrid" and (listener is None or listener.is_closed()):
                listener = await _listen(settings.database_target, wake)
            if leases is not None and leases.due():
                await _heartbeat(leases)
            # Taken before draining: a commit during the drain wakes the next round.
            named = wake.take()
            mine = leases.partitions() if leases is not None else partitions
            # Partitions just taken over may hold anything: drain them all at once.
            polled = time.monotonic() - last_poll >= settings.relay_poll_interval_s or mine != held
            held = mine
            if polled and mine:
                last_poll = time.monotonic()
            schemas = [s for s in SERVICES if polled or s in named or s in busy]
            busy = await _drain(engine, js, mine, config, stats, leases, schemas) if mine else set()
            if time.monotonic() - last_prune > PRUNE_EVERY_S:
                await _prune(engine, settings.relay_retention_s)
                last_prune = time.monotonic()
            if busy:
                continue  # a full batch went out: more is waiting
            asleep = settings.relay_poll_interval_s
            if mine:
                asleep = max(last_poll + asleep - time.monotonic(), 0.0)
            if leases is not None:
                asleep = min(asleep, leases.renew_in())
            await _sleep_until(wake.event, stop, asleep)
    finally:
        if exporter is not None:
            exporter.close()
        if leases is not None:
            with contextlib.suppress(Exception):  # others take over at expiry anyway
                await leases.leave()
        if listener is not None and not listener.is_closed():
            await listener.close()
        with contextlib.suppress(Exception):  # a broker already gone cannot be drained
            await client.drain()
        await engine.dispose()


async def _run_cdc(settings: Settings, stop: asyncio.Event, stats: RelayStats) -> None:
    engine = create_engine(settings.database_target, pool_size=2)
    exporter = await _export_metrics(settings, engine, stats, None)
    config = config_from(settings)

    async def drain(js: Any) -> None:
        while await _drain(engine, js, None, config, stats, schemas=SERVICES):
            pass  # full batches: more is waiting

    async def sweep(js: Any) -> None:
        await _drain(engine, js, None, config, stats, schemas=SERVICES, retrying_only=True)

    async def prune() -> None:
        await _prune(engine, settings.relay_retention_s)

    try:
        await run_cdc_relay(settings, stop, engine, Chores(drain, sweep, prune, stats.add))
    finally:
        if exporter is not None:
            exporter.close()
        await engine.dispose()


async def _export_metrics(
    settings: Settings, engine: AsyncEngine, stats: RelayStats, leases: PartitionLeases | None
) -> asyncio.Server | None:
    if not settings.relay_metrics_port:
        return None

    def body() -> Awaitable[str]:
        counters = {
            "events_published": stats.published,
            "publish_failures": stats.failed,
            "dead_lettered": stats.dead_lettered,
            "duplicates": stats.duplicates,
        }
        held = len(leases.partitions()) if leases is not None else RELAY_PARTITIONS
        return metrics.render(engine, counters, held)

    return await serve_metrics(settings.relay_metrics_host, settings.relay_metrics_port, body)


async def _heartbeat(leases: PartitionLeases) -> None:
    try:
        await leases.heartbeat()
    except Exception:  # PostgreSQL away: our leases lapse and partitions() goes empty
        log.exception("lease heartbeat failed")


async def _drain(
    engine: AsyncEngine,
    js: Any,
    partitions: Sequence[int] | None,
    config: RelayConfig,
    stats: RelayStats,
    fence: PartitionLeases | None = None,
    schemas: Sequence[str] = SERVICES,
    *,
    retrying_only: bool = False,
) -> set[str]:
    """One pass per service in `schemas`; those that published a full batch."""
    busy = set()
    for schema in schemas:
        try:
            result = await relay_pass(
                engine, js, schema, partitions, config, fence, retrying_only=retrying_only
            )
        except Exception:  # PostgreSQL or NATS away: the next round retries
            log.exception("relay pass over %s failed", schema)
            continue
        stats.add(result)
        if result.broker_error is not None:
            log.warning("broker unavailable (%s); backing off", result.broker_error)
            return set()  # the other services would only fail the same way
        if result.published >= config.batch_size:
            busy.add(schema)
    return busy


async def _prune(engine: AsyncEngine, retention_s: int) -> None:
    try:
        await prune_published(engine, retention_s)
    except Exception:  # PostgreSQL away: prune next time
        log.exception("pruning published outbox rows failed")


def asyncpg_dsn(database_url: str) -> str:
    """The SQLAlchemy URL in settings as a plain libpq DSN, for asyncpg's own connections."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


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


async def _sleep_until(wake: asyncio.Event, stop: asyncio.Event, timeout: float) -> None:  # noqa: ASYNC109
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
