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
import random
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import httpx
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from audit import Violation
from bench.orders import Kind, Mix, OrderClient, Outcome, outcome_counts, seed_catalog
from chaos.alert_watch import RunAlerts, alerts_after, start_alerts
from chaos.faults import NETWORK, Fault, Struck, strike, unavailable
from chaos.load import Load
from chaos.netfaults import remove_leftovers
from chaos.sampling import Samples, sample
from chaos.verdict import held_orders, retrying, settled_audit, stream_audit, wait_for_sagas
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
# A process may grow this much after warm-up; told only of a run this long.
MAX_GROWTH = 0.2
# The payment provider's simulator stands in for a system outside ours and keeps
# every payment's books in memory by design: its growth is data, reported, not judged.
KEEPS_ITS_BOOKS = frozenset({"payment-provider"})
LONG_RUN_S = 600.0


@dataclass(frozen=True)
class ChaosPlan:
    faults: int = 8
    gap_s: tuple[float, float] = (3.0, 10.0)  # load between faults
    outage_s: tuple[float, float] = (0.5, 3.0)  # how long a part stays down
    partition_s: tuple[float, float] = (5.0, 30.0)  # how long a network fault lasts
    concurrency: int = 6
    mix: Mix = field(default_factory=lambda: Mix(0.05, 0.05, 0.05, 0.15))
    choreography: float = 0.3  # of card-only orders, sent with "mode": "choreography"
    settle_s: float = 300.0  # for sagas, outbox and read model to finish after the load
    seed: int | None = None
    keep: bool = False  # leave the data and logs for a look
    # JetStream as a cluster of this many nodes, the events stream on all of
    # them, one node SIGKILLed at a time as a fault; 1: a single server.
    nats_nodes: int = 3
    # Run until this many orders are placed, the faults spread over them; None:
    # until the faults are done.
    orders: int | None = None
    progress_s: float = 30.0  # how often the run says how far it has got


@dataclass
class ChaosReport:
    struck: list[Struck]
    outcomes: list[Outcome]
    open_sagas: int
    violations: list[Violation]
    orders_by_status: dict[str, int]  # what PostgreSQL holds at the end
    load_s: float
    settle_s: float
    log_dir: str
    # Apps the supervision restarted after they died unasked (not the faults' kills).
    crash_restarts: dict[str, int] = field(default_factory=dict)
    # Orders whose client was told one ending and PostgreSQL holds another (or none).
    told_not_held: list[str] = field(default_factory=list)
    # What the alert rules did, from the run's own Prometheus (chaos.alert_watch).
    alerts: list[dict[str, Any]] = field(default_factory=list)
    alerts_still_firing: list[str] = field(default_factory=list)
    alerts_note: str | None = None  # why there are none: no Prometheus here
    samples: Samples | None = None  # memory and outbox rows over the run

    @property
    def memory_grew(self) -> dict[str, float]:
        """Processes whose memory grew past MAX_GROWTH after warm-up, in a run long
        enough to tell (LONG_RUN_S); a short run's curves are mostly warm-up."""
        if self.samples is None or self.load_s < LONG_RUN_S:
            return {}
        grown = self.samples.growth().items()
        return {p: g for p, g in grown if g > MAX_GROWTH and p not in KEEPS_ITS_BOOKS}

    # Fault kinds left out of the schedule, with why: never struck, never pretended.
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        unfinished = [o for o in self.outcomes if o.status not in ("CONFIRMED", "CANCELLED")]
        return (
            not self.violations
            and self.open_sagas == 0
            and not unfinished
            and not self.told_not_held
            and not self.alerts_still_firing
            and not self.memory_grew
        )

    def summary(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "orders": len(self.outcomes),
            "load_s": round(self.load_s, 1),
            "settle_s": round(self.settle_s, 1),
            "faults": [
                {"fault": s.fault.value, "at_s": round(s.at_s, 1), "down_s": round(s.down_s, 1),
                 "orders_in_flight": s.orders_in_flight, "detail": s.detail}
                for s in self.struck
            ],
            "skipped": self.skipped,
            "outcomes": outcome_counts(self.outcomes),
            "outcomes_by_mode": {
                mode: dict(Counter(o.status for o in self.outcomes if o.mode == mode))
                for mode in sorted({o.mode for o in self.outcomes})
            },
            # Orders meant to confirm that did not, and why: what the faults cost.
            "cost": [
                {"kind": o.kind.value, "order_id": o.order_id, "status": o.status,
                 "reason": o.reason}
                for o in self.outcomes
                if o.kind in (Kind.CONFIRM, Kind.STORE_CREDIT) and o.status != "CONFIRMED"
            ],
            "retried_requests": sum(o.retries for o in self.outcomes),
            "crash_restarts": self.crash_restarts,
            "orders_by_status": self.orders_by_status,
            "told_not_held": self.told_not_held,
            "open_sagas": self.open_sagas,
            "alerts": self.alerts,
            "alerts_still_firing": self.alerts_still_firing,
            "alerts_note": self.alerts_note,
            "violations": [str(v) for v in self.violations],
            "memory_grew": self.memory_grew,
            **(self.samples.summary() if self.samples is not None else {}),
        }  # fmt: skip


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
    for leftover in remove_leftovers():
        say(f"removed {leftover}, left by a run that died without undoing it")
    missing = unavailable()
    skipped = {fault.value: why for fault, why in missing.items()}
    for fault_name, why in skipped.items():
        say(f"{fault_name} skipped: {why}")
    say("starting PostgreSQL, Temporal (SQLite), NATS, worker, relay, consumers and API...")
    # A killed relay's lease is free sooner; the rest are the production defaults.
    skip = {*missing, *([Fault.KILL_NATS_NODE] if plan.nats_nodes == 1 else [])}
    async with sandbox(
        "chaos", keep=plan.keep, relay_lease_ttl_s=5.0, nats_stream_replicas=plan.nats_nodes
    ) as system:
        settings = system.client_settings()
        client = await connect(settings.temporal(), wait_seconds=30, runtime=_QUIET)
        engine = create_engine(settings.database_target, pool_size=2)
        provider = payment_provider_client(settings.provider())
        alerting: RunAlerts | None = None
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
                samples = Samples(began)
                sampler = asyncio.ensure_future(
                    sample(
                        samples, system.pids, engine, RELAYED.outboxes,
                        lambda: f"{load.progress()}, {len(struck)} of {plan.faults} faults",
                        say, progress_s=plan.progress_s,
                    )
                )  # fmt: skip
                try:
                    schedule = fault_schedule(plan.faults, rng, skip=skip)
                    for n, fault in enumerate(schedule):
                        await asyncio.sleep(_gap(plan, load, began, len(schedule) - n, rng))
                        outage = rng.uniform(
                            *(plan.partition_s if fault in NETWORK else plan.outage_s)
                        )
                        struck.append(await strike(system, fault, outage, began, load.in_flight))
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
                violations += await stream_audit(settings, engine)
                settle_s = time.perf_counter() - began - load_s
                by_status, told_not_held = await retrying(
                    lambda: held_orders(engine, outcomes), plan.settle_s
                )
                alerts = await alerts_after(alerting, struck)
        finally:
            if alerting is not None:
                await alerting.aclose()
            await provider.aclose()
            await engine.dispose()
        return ChaosReport(
            struck, outcomes, open_sagas, violations, by_status, load_s, settle_s,
            str(system.log_dir), dict(system.supervision.crash_restarts), told_not_held,
            *alerts, samples, skipped,
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
