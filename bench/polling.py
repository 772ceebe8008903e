"""`make bench-polling`: saga throughput with and without clients polling GET /orders/{id}.

    python -m bench.polling [--orders 60] [--concurrency 5] [--pollers 10] [--every-ms 50]

Starts the whole system (stack.sandbox) and places orders through the API,
`--concurrency` in flight, each followed to its end in Temporal. Two series
alternate, twice each: `quiet`, and `polled`, where `--pollers` clients each
GET a running order every `--every-ms` ms. Prints sagas/s and p50 of each and
the polled/quiet ratio, and the API's and the worker's CPU per saga.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import httpx
from temporalio.client import Client, WorkflowFailureError

from bench.api_cost import cpu_seconds
from bench.orders import seed_catalog
from bench.percentiles import percentiles
from db.engine import create_engine
from domain.orders import workflow_id_for
from stack.sandbox import sandbox
from temporal_client import connect


async def one_order(http: httpx.AsyncClient, client: Client, sku: str, running: set[str]) -> float:
    began = time.perf_counter()
    body = {"customer_id": f"poll-{uuid.uuid4().hex[:6]}", "items": [{"sku": sku, "quantity": 1}],
            "payment_token": "tok_visa"}  # fmt: skip
    placed = await http.post("/orders", json=body)
    placed.raise_for_status()
    order_id = placed.json()["order_id"]
    running.add(order_id)
    try:
        await client.get_workflow_handle(workflow_id_for(order_id)).result()
    except WorkflowFailureError:
        pass
    finally:
        running.discard(order_id)
    return (time.perf_counter() - began) * 1000


async def poller(http: httpx.AsyncClient, running: set[str], every_s: float, n: int) -> int:
    polls = 0
    while True:
        ids = sorted(running)
        if ids:
            await http.get(f"/orders/{ids[(polls + n) % len(ids)]}")
            polls += 1
        await asyncio.sleep(every_s)


async def series(
    http: httpx.AsyncClient, client: Client, sku: str, args: argparse.Namespace, polled: bool
) -> dict[str, Any]:
    running: set[str] = set()
    pollers = [
        asyncio.ensure_future(poller(http, running, args.every_ms / 1000, n))
        for n in range(args.pollers if polled else 0)
    ]
    queue = iter(range(args.orders))
    latencies: list[float] = []

    async def worker() -> None:
        for _ in queue:
            latencies.append(await one_order(http, client, sku, running))

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    seconds = time.perf_counter() - began
    for task in pollers:
        task.cancel()
    await asyncio.gather(*pollers, return_exceptions=True)
    return {"seconds": seconds, "latencies": latencies}


async def measure(args: argparse.Namespace) -> None:
    async with sandbox("polling") as system:
        settings = system.client_settings()
        engine = create_engine(settings.database_target, pool_size=1)
        catalog = await seed_catalog(engine, 4 * args.orders * 2 + 20)
        await engine.dispose()
        client = await connect(settings.temporal())
        pids = {name: system.apps[name].pid for name in ("api", "worker")}
        totals: dict[str, dict[str, Any]] = {
            s: {"seconds": 0.0, "latencies": [], "cpu": dict.fromkeys(pids, 0.0)}
            for s in ("quiet", "polled")
        }
        async with httpx.AsyncClient(base_url=system.api_base, timeout=30) as http:
            await series(
                http, client, catalog.sku, argparse.Namespace(**{**vars(args), "orders": 5}), False
            )
            for r in range(2):
                for name in ("quiet", "polled") if r == 0 else ("polled", "quiet"):
                    before = {k: cpu_seconds(p) for k, p in pids.items() if p}
                    got = await series(http, client, catalog.sku, args, name == "polled")
                    for k, p in pids.items():
                        if p:
                            totals[name]["cpu"][k] += cpu_seconds(p) - before[k]
                    totals[name]["seconds"] += got["seconds"]
                    totals[name]["latencies"] += got["latencies"]
    print(
        f"\n{2 * args.orders} orders a series, concurrency {args.concurrency}; polled: "
        f"{args.pollers} clients, a GET /orders/{{id}} of a running order every {args.every_ms} ms"
    )
    rate = {}
    for name, got in totals.items():
        count = len(got["latencies"])
        rate[name] = count / got["seconds"]
        cpu = {k: round(v * 1000 / count, 1) for k, v in got["cpu"].items()}
        p50 = percentiles(got["latencies"])["p50_ms"]
        print(f"  {name:<7}{rate[name]:>7.2f} sagas/s  p50 {p50:>7} ms  CPU ms/saga {cpu}")
    print(f"polled/quiet throughput: {rate['polled'] / rate['quiet']:.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--orders", type=int, default=60, help="orders per series per round")
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--pollers", type=int, default=10)
    parser.add_argument("--every-ms", type=int, default=50)
    asyncio.run(measure(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
