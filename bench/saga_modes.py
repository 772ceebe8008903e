"""`make bench-modes`: the same orders, orchestrated and choreographed, in one run.

    python -m bench.saga_modes [--orders 200] [--concurrency 10] [--rounds 2]
                               [--out bench/results]

Starts the whole system as `make run` does (worker, relay, consumers,
choreography handlers, API; embedded servers) on free ports. Then, in rounds
that alternate so the machine's noise hits both alike, POSTs orders that
confirm, half with `"mode": "orchestration"` and half with `"mode":
"choreography"`. Both are timed the same way: from the POST until the
order's OrderConfirmed event reaches NATS (a plain subscriber on
`events.order.>`), so neither series is timed by its own machinery. Prints
orders/s and p50/p95/p99 of each, and the ratios; writes saga_modes.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.msg import Msg

from api.sagas import order_id_for_key
from bench.orders import seed_catalog
from bench.percentiles import percentiles
from bench.progress import Progress
from db.engine import create_engine
from domain.orders import SagaMode
from messaging.wire import Envelope, subject_for
from stack.sandbox import sandbox

WARM_UP = 6
MODES = (SagaMode.ORCHESTRATION, SagaMode.CHOREOGRAPHY)


class Closings:
    """Futures of orders' OrderConfirmed events, resolved by one NATS subscriber."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[float]] = {}

    def expect(self, order_id: str) -> asyncio.Future[float]:
        future = self._waiting[order_id] = asyncio.get_running_loop().create_future()
        return future

    async def on_message(self, msg: Msg) -> None:
        envelope = Envelope.model_validate_json(msg.data)
        future = self._waiting.pop(envelope.aggregate_id, None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())


async def place_and_wait(
    http: httpx.AsyncClient, closings: Closings, sku: str, mode: SagaMode, patience_s: float
) -> float | None:
    """Milliseconds from the POST to the order's OrderConfirmed; None if it never came."""
    key = f"modes-{uuid.uuid4()}"
    confirmed = closings.expect(order_id_for_key(key))
    body = {
        "customer_id": f"bench-{key[-12:]}",
        "items": [{"sku": sku, "quantity": 1}],
        "payment_token": "tok_visa",
        "mode": mode.value,
    }
    started = time.perf_counter()
    reply = await http.post("/orders", json=body, headers={"Idempotency-Key": key})
    if reply.status_code >= 400:
        raise SystemExit(f"{mode} order refused: {reply.status_code} {reply.text[:200]}")
    try:
        ended = await asyncio.wait_for(confirmed, patience_s)
    except TimeoutError:
        return None
    return (ended - started) * 1000


async def series(
    http: httpx.AsyncClient,
    closings: Closings,
    sku: str,
    mode: SagaMode,
    orders: int,
    concurrency: int,
    label: str,
) -> tuple[list[float | None], float]:
    gate = asyncio.Semaphore(concurrency)
    progress = Progress(label, orders)

    async def one() -> float | None:
        async with gate:
            latency = await place_and_wait(http, closings, sku, mode, patience_s=120)
            progress.step(None)
            return latency

    began = time.perf_counter()
    latencies = await asyncio.gather(*(one() for _ in range(orders)))
    return list(latencies), time.perf_counter() - began


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    print("starting the system (PostgreSQL, Temporal, NATS, apps)...", file=sys.stderr)
    async with sandbox("modes", db_pool_size=20) as system:
        settings = system.client_settings()
        engine = create_engine(settings.database_target, pool_size=2)
        catalog = await seed_catalog(engine, 2 * (args.orders + WARM_UP))
        await engine.dispose()
        closings = Closings()
        bus = await nats.connect(settings.nats_target)
        await bus.subscribe(subject_for("order", "OrderConfirmed"), cb=closings.on_message)
        latencies: dict[str, list[float | None]] = {m.value: [] for m in MODES}
        seconds = dict.fromkeys(latencies, 0.0)
        try:
            async with httpx.AsyncClient(base_url=system.api_base, timeout=30) as http:
                for mode in MODES:
                    await series(http, closings, catalog.sku, mode, WARM_UP, WARM_UP, "warm-up")
                for r in range(args.rounds):
                    share = args.orders // args.rounds + (r < args.orders % args.rounds)
                    for mode in MODES if r % 2 == 0 else MODES[::-1]:
                        label = f"{mode.value} {r + 1}/{args.rounds}"
                        got, took = await series(
                            http, closings, catalog.sku, mode, share, args.concurrency, label
                        )
                        latencies[mode.value] += got
                        seconds[mode.value] += took
        finally:
            await bus.close()
    figures = {mode: _figures(latencies[mode], seconds[mode]) for mode in latencies}
    orch, chor = figures["orchestration"], figures["choreography"]
    return {
        "orders_per_mode": args.orders,
        "concurrency": args.concurrency,
        "timed": "POST until the order's OrderConfirmed reaches NATS",
        **figures,
        "ratio_choreography_to_orchestration": {
            key: round(chor[key] / orch[key], 2)
            for key in ("per_s", "p50_ms", "p95_ms", "p99_ms")
            if chor.get(key) and orch.get(key)
        },
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def _figures(latencies: list[float | None], seconds: float) -> dict[str, Any]:
    ended = [ms for ms in latencies if ms is not None]
    return {
        "confirmed": len(ended),
        "unfinished": len(latencies) - len(ended),
        "per_s": round(len(ended) / seconds, 2) if seconds else 0.0,
        **percentiles(ended),
    }


def print_report(report: dict[str, Any]) -> None:
    print(
        f"\n{report['orders_per_mode']} orders per mode, concurrency {report['concurrency']}; "
        f"timed from the POST until OrderConfirmed reaches NATS"
    )
    print(f"{'':<15}{'per s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'unfinished':>12}")
    for mode in MODES:
        row = report[mode.value]
        print(
            f"{mode.value:<15}{row['per_s']:>8}{row.get('p50_ms', '-'):>9}"
            f"{row.get('p95_ms', '-'):>9}{row.get('p99_ms', '-'):>9}{row['unfinished']:>12}"
        )
    ratio = report["ratio_choreography_to_orchestration"]
    print("choreography / orchestration: " + ", ".join(f"{k} {v}x" for k, v in ratio.items()))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--orders", type=int, default=200, help="orders per mode")
    parser.add_argument("--concurrency", type=int, default=10, help="orders in flight")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    if min(args.orders, args.concurrency, args.rounds) < 1:
        parser.error("--orders, --concurrency and --rounds must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = asyncio.run(measure(args))
    print_report(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "saga_modes.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out / 'saga_modes.json'}")


if __name__ == "__main__":
    main()
