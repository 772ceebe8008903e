"""Outbox relay throughput and commit-to-publish lag, beside raw JetStream, in one run.

    python -m bench.relay_throughput [--events 20000] [--rate 500] [--seconds 10]
                                     [--saga-rate 40]

Starts its own PostgreSQL and NATS on free ports, then measures:

  raw publish    the JetStream publish rate of this client alone (300-byte
                 messages with Nats-Msg-Id), awaited one by one and pipelined
                 in batches of 100 — the ceiling the relay works under
  relay drain    `--events` rows already committed, one aggregate each: how fast
                 one relay instance publishes and marks them (events/s)
  relay lag      a steady offered load of `--rate` events/s, one transaction
                 each, for `--seconds`: commit-to-publish lag p50/p99 (database
                 clock: created_at to published_at), for each relay mode in
                 turn: hybrid (NOTIFY + poll), poll alone, and CDC (the WAL);
                 then hybrid again at `--saga-rate`, the events/s `make bench`
                 offers (about 45 on this machine): a pass carries one event or
                 two there, so this is the relay's cost per event at its worst

and prints each relay figure beside the raw rate as a ratio, and the CPU each
costs per event beside raw publishing's per message: the drain's is this
process's (it does nothing else then), each lag run's is the relay's own
process (`python -m relay`, read from /proc), so the load generator's share is
not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import nats
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.cpu import sample, spent_ms
from bench.own_postgres import own_postgres
from bench.percentiles import percentiles
from db.engine import asyncpg_dsn, create_engine
from db.migrate import upgrade
from db.relay_ring import ring_relay
from db.tables import service_tables
from db.unit_of_work import StepContext, event_row, insert_events
from messaging.stream import ensure_stream
from relay.service import run_relay
from relay.slot import SLOT, ensure_slot
from relay.stats import RelayStats
from settings import Settings
from stack.nats import NatsServer
from stack.ports import free_port
from wiring.served import RELAYED

PAYLOAD = {"blob": "x" * 200}  # with the envelope, about 300 bytes on the wire
ROOT = Path(__file__).resolve().parents[1]


def cpu_ms_per(count: int, started: float) -> float:
    """This process's CPU ms per item since `started` (a time.process_time())."""
    return round((time.process_time() - started) * 1000 / max(count, 1), 3)


async def raw_publish(js: Any, count: int, pipelined: bool) -> float:
    body = json.dumps(PAYLOAD).encode()
    started = time.perf_counter()
    if pipelined:
        for start in range(0, count, 100):
            await asyncio.gather(
                *(
                    js.publish("events.bench.Raw", body, headers={"Nats-Msg-Id": str(uuid.uuid4())})
                    for _ in range(min(100, count - start))
                )
            )
    else:
        for _ in range(count):
            await js.publish("events.bench.Raw", body, headers={"Nats-Msg-Id": str(uuid.uuid4())})
    return count / (time.perf_counter() - started)


async def insert_backlog(engine: AsyncEngine, count: int) -> None:
    context = StepContext(service_tables["orders"], f"bench:{uuid.uuid4()}", "bench")
    for start in range(0, count, 500):
        rows = [
            event_row(context, "bench", str(uuid.uuid4()), "Backlog", PAYLOAD, n)
            for n in range(start, min(start + 500, count))
        ]
        async with engine.begin() as conn:
            await insert_events(conn, service_tables["orders"].outbox, rows)


async def pending(engine: AsyncEngine) -> int:
    outbox = service_tables["orders"].outbox
    async with engine.connect() as conn:
        return int(
            await conn.scalar(
                select(func.count()).select_from(outbox).where(outbox.c.status == "PENDING")
            )
            or 0
        )


async def offered_load(
    engine: AsyncEngine, rate: int, seconds: float, writers: int = 8
) -> tuple[str, float]:
    """Commit one event per transaction at up to `rate`/s from `writers` writers;
    the run's event type and the rate actually achieved."""
    kind = f"Load{uuid.uuid4().hex[:6]}"
    interval = writers / rate
    sent = 0

    async def writer() -> None:
        nonlocal sent
        context = StepContext(service_tables["orders"], f"bench:{uuid.uuid4()}", "bench")
        started, mine = time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            row = event_row(context, "bench", str(uuid.uuid4()), kind, PAYLOAD, mine)
            async with engine.begin() as conn:
                await insert_events(conn, service_tables["orders"].outbox, [row])
            ring_relay(engine, "orders")
            mine += 1
            await asyncio.sleep(max(0.0, started + mine * interval - time.perf_counter()))
        sent += mine

    began = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    return kind, sent / (time.perf_counter() - began)


async def lags_ms(engine: AsyncEngine, kind: str) -> list[float]:
    outbox = service_tables["orders"].outbox
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(func.extract("epoch", outbox.c.published_at - outbox.c.created_at)).where(
                outbox.c.event_type == kind, outbox.c.status == "PUBLISHED"
            )
        )
        return sorted(float(r[0]) * 1000 for r in rows)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    postgres, workdir = own_postgres("relay-bench-")
    broker = NatsServer(port=free_port(), store_dir=workdir / "nats", log_dir=workdir / "logs")
    await asyncio.gather(postgres.start(), broker.start())
    try:
        await asyncio.to_thread(upgrade, postgres.url)
        engine = create_engine(postgres.url, pool_size=8)
        client = await nats.connect(broker.url)
        js = client.jetstream()
        await ensure_stream(js)
        cpu = time.process_time()
        raw_seq = await raw_publish(js, min(args.events, 5000), pipelined=False)
        raw_seq_cpu = cpu_ms_per(min(args.events, 5000), cpu)
        cpu = time.process_time()
        raw_pipe = await raw_publish(js, args.events, pipelined=True)
        raw_pipe_cpu = cpu_ms_per(args.events, cpu)
        await client.close()

        settings = Settings(
            database_url=postgres.url,
            nats_url=broker.url,
            relay_metrics_port=0,
            relay_poll_interval_s=1.0,
        )
        await insert_backlog(engine, args.events)
        stop, stats = asyncio.Event(), RelayStats()
        started, cpu = time.perf_counter(), time.process_time()
        relay = asyncio.create_task(run_relay(settings.relay(), stop, tables=RELAYED, stats=stats))
        while await pending(engine) > 0:  # noqa: ASYNC110 - polls the database
            await asyncio.sleep(0.05)
        drain = args.events / (time.perf_counter() - started)
        drain_cpu = cpu_ms_per(args.events, cpu)
        print(f"drained {args.events} events", file=sys.stderr)
        stop.set()
        await relay
        lag: dict[str, dict[str, Any]] = {}
        for mode in os.environ.get("BENCH_RELAY_MODES", "hybrid,poll,cdc").split(","):
            print(f"lag under load: {mode}", file=sys.stderr)
            lag[mode] = await lag_run(engine, settings, mode, args.rate, args.seconds)
        print("lag under the saga bench's load: hybrid", file=sys.stderr)
        at_saga_rate = await lag_run(engine, settings, "hybrid", args.saga_rate, args.seconds)
        await engine.dispose()
    finally:
        await asyncio.gather(broker.stop(), postgres.stop())
    return {
        "raw_publish_sequential_per_s": round(raw_seq),
        "raw_publish_pipelined_per_s": round(raw_pipe),
        "relay_drain_per_s": round(drain),
        "relay_vs_raw_pipelined": round(drain / raw_pipe, 2),
        "raw_publish_sequential_cpu_ms_per_msg": raw_seq_cpu,
        "raw_publish_pipelined_cpu_ms_per_msg": raw_pipe_cpu,
        "relay_drain_cpu_ms_per_event": drain_cpu,
        "offered_rate_per_s": args.rate,
        "duplicates": stats.duplicates,
        **{f"{mode}_{key}": value for mode, row in lag.items() for key, value in row.items()},
        "saga_rate_per_s": args.saga_rate,
        **{f"saga_rate_hybrid_{key}": value for key, value in at_saga_rate.items()},
    }


async def lag_run(
    engine: AsyncEngine, settings: Settings, mode: str, rate: int, seconds: float
) -> dict[str, Any]:
    """Commit-to-publish lag of one relay mode under the offered load."""
    dsn = asyncpg_dsn(settings.database_target)
    if mode == "cdc":  # the slot must exist before the load it is to carry
        conn = await asyncpg.connect(dsn)
        await ensure_slot(conn)
        await conn.close()
    relay = relay_process(settings, mode)
    try:
        await asyncio.sleep(2)  # connected, its first poll done, idle
        before = sample({"relay": relay.pid})
        kind, achieved = await offered_load(engine, rate, seconds)
        await asyncio.sleep(2)  # let the tail of the load go out
        relay_cpu = spent_ms(before, sample({"relay": relay.pid}))["relay"]
        lag = await lags_ms(engine, kind)
    finally:
        relay.terminate()
        await asyncio.to_thread(relay.wait, 30)
    if mode == "cdc":  # a slot nobody reads would hold back WAL
        conn = await asyncpg.connect(dsn)
        await conn.execute("SELECT pg_drop_replication_slot($1)", SLOT)
        await conn.close()
    pct = percentiles(lag, digits=2)
    return {
        "achieved_per_s": round(achieved),
        "lag_events": len(lag),
        # Includes its idle chores over the run (poll, leases): what the load costs it.
        "relay_cpu_ms_per_event": round(relay_cpu / len(lag), 3) if relay_cpu and lag else None,
        "lag_p50_ms": pct.get("p50_ms"),
        "lag_p99_ms": pct.get("p99_ms"),
    }


def relay_process(settings: Settings, mode: str) -> subprocess.Popen[bytes]:
    """`python -m relay` in `mode`, on the bench's servers, as the stack runs it."""
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_target,
        "NATS_URL": settings.nats_target,
        "SAGA_RELAY_MODE": mode,
        "SAGA_RELAY_METRICS_PORT": "0",
        "SAGA_RELAY_POLL_INTERVAL_S": str(settings.relay_poll_interval_s),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "relay"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=int, default=500, help="offered events/s for the lag run")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--saga-rate", type=int, default=40, help="events/s of the saga bench, for a second run"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.events < 1 or args.rate < 1 or args.saga_rate < 1 or args.seconds <= 0:
        parser.error("--events, --rate, --saga-rate and --seconds must be positive")
    report = asyncio.run(bench(args))
    width = max(len(k) for k in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
