"""The chaos run: orders under load while the system's parts die, then the audit over what is left.

Starts the whole system (stack.sandbox), keeps `concurrency` clients placing
orders through the API, and at random moments strikes a fault (chaos.faults):
every kind once per cycle, in random order; a kind this machine cannot make
(no nft, no sch_netem) is left out and the report says why. The parts it kills are brought back
by the system's own supervision, as under `make run`, which also restarts any
part that dies of a fault's side effects (reported), or ends the run should
one crash-loop. When the faults are done the load
stops; every saga is waited for, then the outbox and the read model are given
time to catch up, and the audit (with the provider's books and Temporal's open
sagas) is the verdict.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable, Collection

import httpx
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from bench.orders import OrderClient, seed_catalog
from chaos.alert_watch import RunAlerts, alerts_after, start_alerts
from chaos.faults import NETWORK, Fault, Struck, strike, unavailable, undo_leftovers
from chaos.load import Load
from chaos.long_faults import untold, with_long_faults
from chaos.report import ChaosPlan, ChaosReport
from chaos.sampling import Samples, sample
from chaos.verdict import held_orders, retrying, settled_audit, stream_audit, wait_for_sagas
from chaos.witness import Witnessed, witness
from db.engine import create_engine
from stack.sandbox import sandbox
from temporal_client import connect
from wiring.activities import payment_provider_client
from wiring.served import RELAYED

# The SDK core warns on every retried call while Temporal is down, which is
# the point of the run: keep its errors only.
_QUIET = Runtime(
    telemetry=TelemetryConfig(
        logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
    )
)


def fault_schedule(count: int, rng: random.Random, skip: Collection[Fault] = ()) -> list[Fault]:
    """`count` faults: every kind not skipped once per cycle, shuffled within the cycle."""
    kinds = [fault for fault in Fault if fault not in skip]
    schedule: list[Fault] = []
    while len(schedule) < count:
        cycle = list(kinds)
        rng.shuffle(cycle)
        schedule += cycle
    return schedule[:count]


async def run_chaos(plan: ChaosPlan, say: Callable[[str], None] = print) -> ChaosReport:
    rng = random.Random(plan.seed)
    for leftover in undo_leftovers():
        say(f"removed {leftover}, left by a run that died without undoing it")
    missing = unavailable()
    skipped = {fault.value: why for fault, why in missing.items()}
    for fault_name, why in skipped.items():
        say(f"{fault_name} skipped: {why}")
    say("starting PostgreSQL, Temporal (SQLite), NATS, worker, relay, consumers and API...")
    # A killed relay's lease is free sooner; the rest are the production defaults.
    skip = {*missing, *([Fault.KILL_NATS_NODE] if plan.nats_nodes == 1 else [])}
    async with sandbox(
        "chaos",
        keep=plan.keep,
        relay_lease_ttl_s=5.0,
        relay_retention_s=plan.outbox_retention_s,
        nats_stream_replicas=plan.nats_nodes,
    ) as system:
        settings = system.client_settings()
        client = await connect(settings.temporal(), wait_seconds=30, runtime=_QUIET)
        engine = create_engine(settings.database_target, pool_size=2)
        provider = payment_provider_client(settings.provider())
        alerting: RunAlerts | None = None
        witnessing: asyncio.Future[None] | None = None
        try:
            catalog = await seed_catalog(engine, 100_000)
            async with httpx.AsyncClient(base_url=system.api_base, timeout=10) as http:
                orders = OrderClient(
                    http,
                    client,
                    catalog,
                    patience_s=plan.settle_s,
                    rng=rng,
                    choreography=plan.choreography,
                )
                began = time.perf_counter()
                alerting = await start_alerts(settings, str(system.log_dir), began)
                stop = asyncio.Event()
                load = Load(orders, plan.mix, rng, plan.orders)
                running = asyncio.ensure_future(load.run(plan.concurrency, stop))
                struck: list[Struck] = []
                schedule = with_long_faults(fault_schedule(plan.faults, rng, skip), plan.long_s)
                samples, seen = Samples(began), Witnessed()
                sampler = asyncio.ensure_future(
                    sample(
                        samples, system.pids, engine, RELAYED.outboxes,
                        lambda: f"{load.progress()}, {len(struck)} of {len(schedule)} faults",
                        say, progress_s=plan.progress_s,
                    )
                )  # fmt: skip
                witnessing = asyncio.ensure_future(witness(seen, engine, RELAYED.outboxes))
                try:
                    for n, (fault, held_long) in enumerate(schedule):
                        await asyncio.sleep(_gap(plan, load, began, len(schedule) - n, rng))
                        outage = rng.uniform(
                            *(plan.partition_s if fault in NETWORK else plan.outage_s)
                        )
                        if held_long and plan.long_s is not None:
                            outage = plan.long_s
                        hit = await strike(system, fault, outage, began, load.in_flight)
                        struck.append(dataclasses.replace(hit, held_long=held_long))
                        say(str(struck[-1]))
                    await asyncio.sleep(plan.gap_s[0])  # load on the recovered system, too
                    if plan.orders is None:
                        stop.set()
                    outcomes = await running
                except BaseException:
                    running.cancel()  # its clients must not outlive the system
                    await asyncio.gather(running, return_exceptions=True)
                    raise
                finally:
                    sampler.cancel()
                    await asyncio.gather(sampler, return_exceptions=True)
                load_s = time.perf_counter() - began
                say(f"load stopped after {load_s:.0f}s and {len(outcomes)} orders; settling...")
                open_sagas = await wait_for_sagas(client, plan.settle_s)
                violations = await settled_audit(engine, provider, client, plan.settle_s)
                witnessing.cancel()
                await asyncio.gather(witnessing, return_exceptions=True)
                violations += await stream_audit(settings, engine, seen.rows)
                settle_s = time.perf_counter() - began - load_s
                by_status, told_not_held = await retrying(
                    lambda: held_orders(engine, outcomes), plan.settle_s
                )
                alerts = await alerts_after(alerting, struck)
        finally:
            if witnessing is not None:
                witnessing.cancel()
            if alerting is not None:
                await alerting.aclose()
            await provider.aclose()
            await engine.dispose()
        return ChaosReport(
            struck, outcomes, open_sagas, violations, by_status, load_s, settle_s,
            str(system.log_dir), dict(system.supervision.crash_restarts), told_not_held,
            *alerts, samples, skipped,
            alerts_untold=untold([s for s in struck if s.held_long], alerts[0]),
            outbox_retention_s=plan.outbox_retention_s, witnessed=len(seen.rows),
        )  # fmt: skip


def _gap(plan: ChaosPlan, load: Load, began: float, faults_left: int, rng: random.Random) -> float:
    """Load before the next fault: drawn from the plan's range, or, running to a count
    of orders, the time the rest should take at the rate so far, shared among the
    faults left (jittered; never below the range's low end)."""
    if plan.orders is None or not load.outcomes:
        return rng.uniform(*plan.gap_s)
    elapsed = time.perf_counter() - began
    rate = len(load.outcomes) / elapsed
    rest_s = max(plan.orders - load.begun, 0) / rate if rate > 0 else plan.gap_s[1]
    return max(plan.gap_s[0], rest_s / faults_left * rng.uniform(0.7, 1.3))
