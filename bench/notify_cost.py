"""What the NOTIFY in every outbox-writing transaction costs the writers, in one run.

    python -m bench.notify_cost [--writers 8] [--seconds 5] [--rounds 2]

Starts its own PostgreSQL on a free port, a listener on the outbox channel (as
the hybrid relay is), and `--writers` connections committing step-like
transactions as the activities do (db.unit_of_work.insert_events: the
aggregate's advisory lock, an outbox row), alternating round by round: with a
NOTIFY inside the transaction (how steps woke the relay until 2026-12), with
the coalesced ring after the commit (db.relay_ring.ring_relay, how they do
now), and with no wake-up at all. PostgreSQL takes one global lock at the
commit of every transaction that notified, so notifying commits queue behind
each other; this prints commits/s and commit latency p50/p99 of each series,
and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.own_postgres import own_postgres
from bench.percentiles import percentiles
from db.engine import asyncpg_dsn, create_engine
from db.migrate import upgrade
from db.relay_ring import OUTBOX_CHANNEL, ring_relay
from db.tables import service_tables
from db.unit_of_work import StepContext, event_row, insert_events

PAYLOAD = {"blob": "x" * 200}


async def series(
    engine: AsyncEngine, writers: int, seconds: float, wakeup: str
) -> tuple[int, list[float]]:
    """Commits made and their latencies (ms) by `writers` writers in `seconds`."""
    latencies: list[float] = []

    async def writer() -> None:
        context = StepContext(service_tables["orders"], f"bench:{uuid.uuid4()}", "bench")
        until = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < until:
            row = event_row(context, "bench", str(uuid.uuid4()), "Notified", PAYLOAD, n)
            started = time.perf_counter()
            async with engine.begin() as conn:
                await insert_events(conn, service_tables["orders"].outbox, [row])
                if wakeup == "notify":  # the old way: inside the step's transaction
                    await conn.execute(select(func.pg_notify(OUTBOX_CHANNEL, "orders")))
            if wakeup == "ring":
                ring_relay(engine, "orders")
            latencies.append((time.perf_counter() - started) * 1000)
            n += 1

    await asyncio.gather(*(writer() for _ in range(writers)))
    return len(latencies), latencies


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    postgres, _ = own_postgres("notify-bench-")
    await postgres.start()
    heard = 0

    def count(*_: Any) -> None:
        nonlocal heard
        heard += 1

    try:
        await asyncio.to_thread(upgrade, postgres.url)
        engine = create_engine(postgres.url, pool_size=args.writers)
        listener = await asyncpg.connect(asyncpg_dsn(postgres.url))
        await listener.add_listener(OUTBOX_CHANNEL, count)
        await series(engine, args.writers, 1.0, "notify")  # warm the pool and caches
        runs: dict[str, list[tuple[int, list[float]]]] = {"notify": [], "ring": [], "none": []}
        for _ in range(args.rounds):
            for name in runs:
                runs[name].append(await series(engine, args.writers, args.seconds, name))
        await listener.close()
        await engine.dispose()
    finally:
        await postgres.stop()
    report: dict[str, Any] = {"writers": args.writers, "seconds": args.seconds}
    for name, done in runs.items():
        commits = sum(c for c, _ in done)
        pct = percentiles([ms for _, lat in done for ms in lat], digits=2)
        report[name] = {
            "commits_per_s": round(commits / (args.seconds * args.rounds)),
            "p50_ms": pct.get("p50_ms"),
            "p99_ms": pct.get("p99_ms"),
        }
    for name in ("notify", "ring"):
        report[f"{name}_vs_none_throughput"] = round(
            report[name]["commits_per_s"] / report["none"]["commits_per_s"], 2
        )
    report["notifications_heard"] = heard
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.writers < 1 or args.seconds <= 0 or args.rounds < 1:
        parser.error("--writers, --seconds and --rounds must be positive")
    report = asyncio.run(bench(args))
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
