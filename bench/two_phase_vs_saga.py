"""The same order through the plain saga and through 2PC, measured in one run.

    python -m bench.two_phase_vs_saga [--orders 150] [--concurrency 15] [--rounds 3]

Starts its own embedded stack on free ports (in-memory Temporal dev server with
the project's dynamic config, PostgreSQL, a worker in this process), then runs
rounds that alternate the variants so machine noise hits each alike:

  saga          card only: reserve_stock + charge_payment as compensable steps
  2pc           card only, settled by TwoPhaseCommit (stock XA + card TCC)
  2pc+credit    part store credit: TwoPhaseCommit over stock XA, wallet XA, card TCC

Prints latency (start → result) p50/p95/p99 and throughput per variant, and
each figure's ratio to the saga's. Figures are for comparison within one run;
absolute numbers move with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bench.percentiles import percentiles
from db.engine import create_engine
from db.tables import products
from db.wallet_store import WalletStore
from domain.order_saga import SagaState
from domain.orders import OrderLine, PlaceOrder, Settlement, workflow_id_for
from stack.temporal import DYNAMIC_CONFIG
from stack.throwaway import throwaway_stack
from temporal_client import connect
from wiring.activities import all_activities, payment_provider_client
from wiring.root import build_workers, running

VARIANTS = ("saga", "2pc", "2pc+credit")
PRICE = 1000


@dataclass
class Figures:
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    failed: int = 0

    def summary(self) -> dict[str, float]:
        lat = self.latencies_ms
        return {
            "orders": len(lat),
            "failed": self.failed,
            **percentiles(lat),
            "orders_per_s": round(len(lat) / self.seconds, 1) if self.seconds else 0.0,
        }


async def seed(engine: AsyncEngine, orders: int) -> tuple[str, list[str]]:
    sku = f"BENCH-{uuid.uuid4().hex[:6]}"
    customers = [f"bench-{uuid.uuid4().hex[:8]}" for _ in range(orders)]
    async with engine.begin() as conn:
        await conn.execute(
            products.insert().values(
                sku=sku, name="bench", price=PRICE, currency="EUR", stock=orders * 10
            )
        )
        store = WalletStore()
        for customer in customers:
            await store.open_with(conn, customer, PRICE)
    return sku, customers


def order_for(variant: str, sku: str, customer: str) -> PlaceOrder:
    return PlaceOrder(
        order_id=str(uuid.uuid4()),
        customer_id=customer,
        items=[OrderLine(sku=sku, quantity=1)],
        payment_token="tok_bench",
        settlement=Settlement.SAGA if variant == "saga" else Settlement.TWO_PHASE,
        store_credit=PRICE // 2 if variant == "2pc+credit" else 0,
    )


async def run_batch(client: Any, queue: str, orders: list[PlaceOrder], concurrency: int) -> Figures:
    figures = Figures()
    gate = asyncio.Semaphore(concurrency)

    async def one(order: PlaceOrder) -> None:
        async with gate:
            started = time.perf_counter()
            handle = await client.start_workflow(
                "OrderSaga",
                order,
                id=workflow_id_for(order.order_id),
                task_queue=queue,
                result_type=SagaState,
            )
            try:
                await handle.result()
            except Exception:
                figures.failed += 1
                return
            figures.latencies_ms.append((time.perf_counter() - started) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(one(o) for o in orders))
    figures.seconds = time.perf_counter() - began
    return figures


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    async with throwaway_stack("bench", max_prepared_transactions=200, db_pool_size=20) as settings:
        client = await connect(settings.temporal())
        engine = create_engine(settings.database_target, pool_size=20)
        queue = f"bench-{uuid.uuid4().hex[:6]}"
        provider_client = payment_provider_client(settings.provider())
        activities = all_activities(engine, settings, provider_client)
        per_round = max(1, args.orders // args.rounds)
        sku, customers = await seed(engine, per_round * args.rounds * len(VARIANTS) + 10)
        pool = iter(customers)
        results = {v: Figures() for v in VARIANTS}
        async with running(build_workers(client, queue, activities)):
            # Warm-up: imports, sandbox and connection pools, not measured.
            await run_batch(client, queue, [order_for(v, sku, next(pool)) for v in VARIANTS], 3)
            for round_no in range(args.rounds):
                for variant in VARIANTS if round_no % 2 == 0 else reversed(VARIANTS):
                    batch = [order_for(variant, sku, next(pool)) for _ in range(per_round)]
                    got = await run_batch(client, queue, batch, args.concurrency)
                    results[variant].latencies_ms += got.latencies_ms
                    results[variant].seconds += got.seconds
                    results[variant].failed += got.failed
                    print(f"round {round_no + 1}/{args.rounds} {variant:<11} done", file=sys.stderr)
        await engine.dispose()
        await provider_client.aclose()
    return {
        "orders_per_variant": per_round * args.rounds,
        "concurrency": args.concurrency,
        "server": {"temporal": "dev server, in memory", "dynamic_config": dict(DYNAMIC_CONFIG)},
        "variants": {v: f.summary() for v, f in results.items()},
    }


def print_table(report: dict[str, Any]) -> None:
    base = report["variants"]["saga"]
    print(
        f"\n{report['orders_per_variant']} orders per variant, concurrency "
        f"{report['concurrency']}, {report['server']['temporal']}, "
        f"{report['server']['dynamic_config']}"
    )
    print(
        f"{'variant':<12}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'orders/s':>10}"
        f"{'p50 vs saga':>13}{'thru vs saga':>14}{'failed':>8}"
    )
    for name, row in report["variants"].items():
        print(
            f"{name:<12}{row['p50_ms']:>9}{row['p95_ms']:>9}{row['p99_ms']:>9}"
            f"{row['orders_per_s']:>10}{row['p50_ms'] / base['p50_ms']:>13.2f}"
            f"{row['orders_per_s'] / base['orders_per_s']:>14.2f}{row['failed']:>8}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=150, help="orders per variant")
    parser.add_argument("--concurrency", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.orders < 1 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--orders, --concurrency and --rounds must be at least 1")
    report = asyncio.run(bench(args))
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
