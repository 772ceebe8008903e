"""`make bench`: orders through the HTTP API under load, beside a bare workflow's floor, in one run.

    python -m bench.load [--orders 300] [--concurrency 10 | --rate 20] [--rounds 2]
                         [--declined 0.05] [--out-of-stock 0.05] [--cancelled 0.05]
                         [--store-credit 0] [--sqlite-pragmas journal_mode=wal,...]
                         [--out bench/results]

Starts the whole system as `make run` does (worker, relay, consumers and API
as processes; PostgreSQL, Temporal on SQLite, NATS, the payment simulator) on
free ports in a temporary directory. Then, in rounds that alternate so the
machine's noise hits both alike:

  saga    orders POSTed to the API (a mix of endings), each timed from the
          POST until its saga's result in Temporal
  floor   a bare workflow with as many no-op activities as a confirmed saga
          runs, started by the Temporal client on the same server

Prints sagas/s and latency p50/p95/p99 of both, and the ratios, then where
the cost goes (bench.breakdown): CPU ms per workflow of each process, Temporal
history events and PostgreSQL transactions per workflow; writes load.json and
load.png under --out.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast, get_args

import httpx
from temporalio.client import Client
from temporalio.worker import Worker

from bench.bare_workflow import BareSteps, noop
from bench.breakdown import BENCH, Meter, format_table, per_workflow, ratios
from bench.history_events import history_summary
from bench.orders import Kind, Mix, OrderClient, Outcome, drive, outcome_counts, seed_catalog
from bench.percentiles import percentiles
from bench.pg_xacts import SETTLE_S, database_xacts, published_events
from bench.plot import write_plot
from bench.progress import Progress
from db.engine import create_engine
from domain.orders import workflow_id_for
from history_corpus.steps import steps_of
from settings import SqlitePragma
from stack.run import Supervisor
from stack.sandbox import sandbox
from stack.temporal import DYNAMIC_CONFIG
from temporal_client import connect
from wiring.served import RELAYED

WARM_UP = 6
SQLITE_PRAGMAS: tuple[str, ...] = get_args(SqlitePragma)


def figures(outcomes: list[Outcome], seconds: float) -> dict[str, Any]:
    ended = [o.latency_ms for o in outcomes if o.latency_ms > 0]
    if not ended:
        return {"workflows": 0}
    return {"workflows": len(ended), "per_s": round(len(ended) / seconds, 2), **percentiles(ended)}


async def steps_of_a_confirmed_saga(client: Client, order_id: str) -> int:
    """Every step, regular or local activity: the floor runs as many, all regular."""
    history = await client.get_workflow_handle(workflow_id_for(order_id)).fetch_history()
    return len(steps_of(history))


def bare_run(client: Client, queue: str, steps: int, started_ids: list[str]) -> Any:
    async def one(kind: Kind) -> Outcome:
        started = time.perf_counter()
        workflow_id = f"bench-bare-{uuid.uuid4()}"
        started_ids.append(workflow_id)
        await client.execute_workflow(BareSteps.run, steps, id=workflow_id, task_queue=queue)
        ended = time.perf_counter()
        return Outcome(
            kind, status="COMPLETED", latency_ms=(ended - started) * 1000, ended_at=ended
        )

    return one


def stack_pids(system: Supervisor) -> dict[str, int | None]:
    """Each part's pid now (a restarted app has a new one), and this process's."""
    pids = {name: process.pid for name, process in system.apps.items()}
    pids.update({name: server.process.pid for name, server in system.servers.items()})
    return {**pids, BENCH: os.getpid()}


async def alternate(
    kinds: list[Kind],
    rounds: int,
    one: dict[str, Callable[[Kind], Awaitable[Outcome]]],
    meter: Meter,
    pace: dict[str, Any],
) -> tuple[dict[str, list[Outcome]], dict[str, float]]:
    """Saga and floor in alternating rounds, each phase metered; outcomes and seconds."""
    runs: dict[str, list[Outcome]] = {"saga": [], "floor": []}
    seconds = {"saga": 0.0, "floor": 0.0}
    await meter.mark()
    for r in range(rounds):
        batch = kinds[r::rounds]
        for series in ("saga", "floor") if r % 2 == 0 else ("floor", "saga"):
            progress = Progress(f"{series} {r + 1}/{rounds}", len(batch))
            began = time.perf_counter()
            ran = await drive(batch, one[series], on_done=progress.step, **pace)
            seconds[series] += time.perf_counter() - began
            runs[series] += ran
            await meter.phase_ended(series, sum(1 for o in ran if o.latency_ms > 0))
    return runs, seconds


async def sample_histories(
    client: Client, sagas: list[Outcome], bare_ids: list[str]
) -> dict[str, dict[str, Any]]:
    saga_ids = [workflow_id_for(o.order_id) for o in sagas if o.order_id and o.latency_ms > 0]
    return {
        "saga": await history_summary(client, saga_ids),
        "floor": await history_summary(client, bare_ids),
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    mix = Mix(args.declined, args.out_of_stock, args.cancelled, args.store_credit)
    pace = {"rate": args.rate} if args.rate else {"concurrency": args.concurrency}
    print(
        "starting the system (PostgreSQL, Temporal, NATS, worker, relay, API)...", file=sys.stderr
    )
    server = {} if args.sqlite_pragmas is None else {"temporal_sqlite_pragmas": args.sqlite_pragmas}
    async with sandbox("bench", db_pool_size=20, **server) as system:
        settings = system.client_settings()
        client = await connect(settings.temporal())
        engine = create_engine(settings.database_target, pool_size=2)
        catalog = await seed_catalog(engine, args.orders + WARM_UP)
        meter = Meter(
            lambda: stack_pids(system),
            lambda: database_xacts(engine),
            lambda: published_events(engine, RELAYED.outboxes),
        )
        floor_queue = f"bench-floor-{uuid.uuid4().hex[:6]}"
        floor = Worker(client, task_queue=floor_queue, workflows=[BareSteps], activities=[noop])
        async with httpx.AsyncClient(base_url=system.api_base, timeout=30) as http, floor:
            orders = OrderClient(http, client, catalog, patience_s=300, rng=rng)
            warm = await drive([Kind.CONFIRM] * WARM_UP, orders.run, concurrency=WARM_UP)
            confirmed = [o for o in warm if o.status == "CONFIRMED"]
            if not confirmed:
                raise SystemExit(f"warm-up orders did not confirm: {[o.reason for o in warm]}")
            steps = await steps_of_a_confirmed_saga(client, str(confirmed[0].order_id))
            bare_ids: list[str] = []
            bare = bare_run(client, floor_queue, steps, bare_ids)
            await drive([Kind.CONFIRM] * WARM_UP, bare, concurrency=WARM_UP)
            del bare_ids[:]

            kinds = mix.plan(args.orders, rng)
            one = {"saga": orders.run, "floor": bare}
            runs, seconds = await alternate(kinds, args.rounds, one, meter, pace)
            histories = await sample_histories(client, runs["saga"], bare_ids)
        await engine.dispose()
    saga, base = figures(runs["saga"], seconds["saga"]), figures(runs["floor"], seconds["floor"])
    cost = {s: {**per_workflow(meter.totals[s]), "history": histories[s]} for s in runs}
    by_kind = {
        kind.value: figures([o for o in runs["saga"] if o.kind is kind], seconds["saga"])
        for kind in Kind
    }
    return {
        "orders": args.orders,
        "pace": pace,
        "mix": dataclasses.asdict(mix),
        "activities_per_saga": steps,
        "saga": saga,
        "floor": base,
        "ratio": {
            key: round(saga[field] / base[field], 2)
            for key, field in (("p50", "p50_ms"), ("p99", "p99_ms"), ("per_s", "per_s"))
            if saga.get(field) and base.get(field)
        },
        "saga_p50_by_kind_ms": {k: v.get("p50_ms") for k, v in by_kind.items()},
        "outcomes": outcome_counts(runs["saga"]),
        "breakdown": {**cost, "ratio": ratios(cost["saga"], cost["floor"]),
                      "method": _METHOD},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "server": {"temporal": "dev server, SQLite", "dynamic_config": dict(DYNAMIC_CONFIG),
                   "sqlite_pragmas": settings.temporal_sqlite_pragmas},
        "_latencies": {s: [o.latency_ms for o in runs[s] if o.latency_ms] for s in runs},
        "_ends": [o.ended_at for o in runs["saga"] if o.ended_at],
    }  # fmt: skip


_METHOD = {
    "cpu": "utime+stime from /proc of each process and its descendants (PostgreSQL: the "
    "postmaster and its backends), at each phase's start and end; bench: this process "
    "alone, which in the floor phase also runs the floor's worker",
    "history": "events of a sample of each series' workflows; a saga's include its 2PC child's",
    "pg_xacts": f"xact_commit + xact_rollback of the app's database in pg_stat_database, "
    f"read {SETTLE_S} s after each phase (statistics are flushed at most once a second)",
}


def print_report(report: dict[str, Any]) -> None:
    pace = report["pace"]
    how = f"{pace['rate']}/s offered" if "rate" in pace else f"concurrency {pace['concurrency']}"
    print(
        f"\n{report['orders']} orders through the API, {how}; floor = bare workflow with "
        f"{report['activities_per_saga']} no-op activities"
    )
    print(f"{'':<8}{'per s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for name in ("saga", "floor"):
        row = report[name]
        if not row.get("workflows"):
            print(f"{name:<8}no workflow finished")
            continue
        print(f"{name:<8}{row['per_s']:>8}{row['p50_ms']:>9}{row['p95_ms']:>9}{row['p99_ms']:>9}")
    ratio = report["ratio"]
    print(f"saga/floor: p50 {ratio['p50']}x, p99 {ratio['p99']}x, throughput {ratio['per_s']}x")
    print(f"saga p50 by kind (ms): {report['saga_p50_by_kind_ms']}")
    print(f"outcomes (meant -> ended): {report['outcomes']}")
    print(f"\n{format_table(report['breakdown'])}")


def fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1")
    return value


def sqlite_pragmas(text: str) -> dict[SqlitePragma, str]:
    """'journal_mode=wal,synchronous=normal'; '' for SQLite's own defaults."""
    pairs = [part.partition("=") for part in text.split(",") if part.strip()]
    if any(not value or key.strip() not in SQLITE_PRAGMAS for key, _, value in pairs):
        raise argparse.ArgumentTypeError(
            f"{text!r}: give PRAGMA=VALUE pairs, comma-separated, of {', '.join(SQLITE_PRAGMAS)}"
        )
    return {cast(SqlitePragma, key.strip()): value.strip() for key, _, value in pairs}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--orders", type=int, default=300)
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--concurrency", type=int, default=10, help="orders in flight")
    pace.add_argument("--rate", type=float, help="orders started per second (open loop)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--declined", type=fraction, default=0.05)
    parser.add_argument("--out-of-stock", type=fraction, default=0.05)
    parser.add_argument("--cancelled", type=fraction, default=0.05)
    parser.add_argument(
        "--store-credit", type=fraction, default=0.0, help="fraction paid half by wallet (2PC)"
    )
    parser.add_argument(
        "--sqlite-pragmas",
        type=sqlite_pragmas,
        help="the dev server's SQLite pragmas, e.g. journal_mode=wal,synchronous=normal; "
        "'' for SQLite's defaults (default: SAGA_TEMPORAL_SQLITE_PRAGMAS's default)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    if args.orders < 1 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--orders, --concurrency and --rounds must be at least 1")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be above 0")
    if args.declined + args.out_of_stock + args.cancelled + args.store_credit > 1:
        parser.error("the fractions of the mix must sum to at most 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = asyncio.run(measure(args))
    latencies, ends = report.pop("_latencies"), report.pop("_ends")
    print_report(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load.json").write_text(json.dumps(report, indent=2) + "\n")
    write_plot(
        args.out / "load.png",
        latencies,
        ends,
        f"{report['orders']} orders, {report['pace']}, saga vs bare workflow",
    )
    print(f"wrote {args.out / 'load.json'} and {args.out / 'load.png'}")


if __name__ == "__main__":
    main()
