"""`make bench-api`: the API process's CPU per order, beside a trivial request's, in one run.

    python -m bench.api_cost [--orders 200] [--concurrency 4] [--rounds 2]

Starts the whole system as `make run` does (stack.sandbox) and reads the API
process's own CPU time (utime + stime in /proc, every thread of it) before and
after each series, so the figure is what the API spends, not the client:

  health   GET /healthz: a request through the same app and middleware that
           does nothing (the baseline: HTTP, routing, telemetry, access log)
  order    POST /orders with an Idempotency-Key, as clients and bench.load
           send it: priced, the id claimed, the saga started
  unkeyed  POST /orders without one

Series alternate over rounds, so the machine's noise hits each alike. The
sagas run meanwhile on the worker; the API does nothing for them unasked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench.orders import seed_catalog
from db.engine import create_engine
from stack.sandbox import sandbox

_TICK_S = 1 / os.sysconf("SC_CLK_TCK")
SERIES = ("health", "order", "unkeyed")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process, all its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_S


Call = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


def calls(sku: str) -> dict[str, Call]:
    def body(n: int) -> dict[str, Any]:
        return {
            "customer_id": f"cost-{n % 50}",
            "items": [{"sku": sku, "quantity": 1 + n % 3}],
            "payment_token": "tok_visa",
        }

    async def health(http: httpx.AsyncClient, n: int) -> httpx.Response:
        return await http.get("/healthz")

    async def order(http: httpx.AsyncClient, n: int) -> httpx.Response:
        key = {"Idempotency-Key": f"cost-{uuid.uuid4()}"}
        return await http.post("/orders", json=body(n), headers=key)

    async def unkeyed(http: httpx.AsyncClient, n: int) -> httpx.Response:
        return await http.post("/orders", json=body(n))

    return {"health": health, "order": order, "unkeyed": unkeyed}


async def series(
    http: httpx.AsyncClient, pid: int, call: Call, count: int, concurrency: int
) -> tuple[float, float]:
    """CPU seconds of the API and wall seconds for `count` calls, `concurrency` in flight."""
    numbers = iter(range(count))

    async def client() -> None:
        for n in numbers:
            reply = await call(http, n)
            if reply.status_code >= 300:
                raise SystemExit(f"{reply.status_code}: {reply.text[:300]}")

    before, began = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return cpu_seconds(pid) - before, time.perf_counter() - began


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    print("starting the system (PostgreSQL, Temporal, NATS, worker, API)...", file=sys.stderr)
    async with sandbox("api-cost") as system:
        engine = create_engine(system.client_settings().database_target, pool_size=1)
        catalog = await seed_catalog(engine, 3 * (args.orders * args.rounds + 20))
        await engine.dispose()
        pid = system.apps["api"].pid
        assert pid is not None
        cpu = dict.fromkeys(SERIES, 0.0)
        wall = dict.fromkeys(SERIES, 0.0)
        async with httpx.AsyncClient(base_url=system.api_base, timeout=30) as http:
            chosen = calls(catalog.sku)
            for name in SERIES:  # warm-up: connections, caches, first imports
                await series(http, pid, chosen[name], 10, args.concurrency)
            per_round = args.orders
            for r in range(args.rounds):
                for name in SERIES if r % 2 == 0 else tuple(reversed(SERIES)):
                    used, took = await series(http, pid, chosen[name], per_round, args.concurrency)
                    cpu[name] += used
                    wall[name] += took
        count = args.orders * args.rounds
        return {
            "requests_per_series": count,
            "concurrency": args.concurrency,
            "cpu_ms_per_request": {k: round(v * 1000 / count, 2) for k, v in cpu.items()},
            "requests_per_s": {k: round(count / v, 1) for k, v in wall.items()},
            "clock_tick_ms": round(_TICK_S * 1000, 1),
        }


def print_report(report: dict[str, Any]) -> None:
    cpu = report["cpu_ms_per_request"]
    print(
        f"\nAPI process CPU per request, {report['requests_per_series']} requests a series, "
        f"concurrency {report['concurrency']} (clock tick {report['clock_tick_ms']} ms)"
    )
    for name in SERIES:
        print(f"  {name:<8}{cpu[name]:>7} ms   {report['requests_per_s'][name]:>7} req/s")
    print(
        f"POST /orders: {cpu['order']} ms CPU per order (keyed), {cpu['unkeyed']} unkeyed; "
        f"GET /healthz baseline {cpu['health']} ms; order over baseline "
        f"{round(cpu['order'] - cpu['health'], 2)} ms"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--orders", type=int, default=200, help="requests per series per round")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    if args.orders < 1 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--orders, --concurrency and --rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = asyncio.run(measure(args))
    print_report(report)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
