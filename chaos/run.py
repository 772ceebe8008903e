"""The chaos run: orders under load while the system's parts die, then the audit over what is left.

Starts the whole system (stack.sandbox), keeps `concurrency` clients placing
orders through the API, and at random moments strikes a fault (chaos.faults):
every kind once per cycle, in random order. The parts it kills are brought back
by the system's own supervision, as under `make run`, which also restarts any
part that dies of a fault's side effects (reported), or ends the run should
one crash-loop. When the faults are done the load
stops; every saga is waited for, then the outbox and the read model are given
time to catch up, and the audit (with the provider's books and Temporal's open
sagas) is the verdict.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
from sqlalchemy import text
from temporalio.client import Client
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from audit import Scope, Violation, run_audit
from audit.stream_order import stream_violations
from bench.orders import Kind, Mix, OrderClient, Outcome, outcome_counts, seed_catalog
from chaos.alert_watch import AlertLog, prometheus_binary, until_cleared, watching
from chaos.faults import Fault, Struck, strike
from db.engine import create_engine
from stack.prometheus_config import local_targets
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
_BY_STATUS = text("SELECT status, count(*) FROM orders.orders GROUP BY status ORDER BY status")
_HELD = text("SELECT order_id, status FROM orders.orders WHERE order_id = ANY(:ids)")
AFTERMATH_S = 10.0
_OPEN_SAGAS = "WorkflowType IN ('OrderSaga', 'TwoPhaseCommit') AND ExecutionStatus = 'Running'"


@dataclass(frozen=True)
class ChaosPlan:
    faults: int = 8
    gap_s: tuple[float, float] = (3.0, 10.0)  # load between faults
    outage_s: tuple[float, float] = (0.5, 3.0)  # how long a part stays down
    concurrency: int = 6
    mix: Mix = field(default_factory=lambda: Mix(0.05, 0.05, 0.05, 0.15))
    choreography: float = 0.3  # of card-only orders, sent with "mode": "choreography"
    settle_s: float = 300.0  # for sagas, outbox and read model to finish after the load
    seed: int | None = None
    keep: bool = False  # leave the data and logs for a look
    # JetStream as a cluster of this many nodes, the events stream on all of
    # them, one node SIGKILLed at a time as a fault; 1: a single server.
    nats_nodes: int = 3


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

    @property
    def passed(self) -> bool:
        unfinished = [o for o in self.outcomes if o.status not in ("CONFIRMED", "CANCELLED")]
        return (
            not self.violations
            and self.open_sagas == 0
            and not unfinished
            and not self.told_not_held
            and not self.alerts_still_firing
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
        }  # fmt: skip


def fault_schedule(
    count: int, rng: random.Random, kinds: Sequence[Fault] = tuple(Fault)
) -> list[Fault]:
    """`count` faults: every kind once per cycle of len(kinds), shuffled within the cycle."""
    schedule: list[Fault] = []
    while len(schedule) < count:
        cycle = list(kinds)
        rng.shuffle(cycle)
        schedule += cycle
    return schedule[:count]


async def run_chaos(plan: ChaosPlan, say: Callable[[str], None] = print) -> ChaosReport:
    rng = random.Random(plan.seed)
    say("starting PostgreSQL, Temporal (SQLite), NATS, worker, relay, consumers and API...")
    # A killed relay's lease is free sooner; the rest are the production defaults.
    kinds = [f for f in Fault if plan.nats_nodes > 1 or f is not Fault.KILL_NATS_NODE]
    async with sandbox(
        "chaos", keep=plan.keep, relay_lease_ttl_s=5.0, nats_stream_replicas=plan.nats_nodes
    ) as system:
        settings = system.client_settings()
        client = await connect(settings.temporal(), wait_seconds=30, runtime=_QUIET)
        engine = create_engine(settings.database_target, pool_size=2)
        provider = payment_provider_client(settings.provider())
        alerting: _Alerting | None = None
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
                alerting = await _alerting(settings, str(system.log_dir), began)
                stop = asyncio.Event()
                load = _Load(orders, plan.mix, rng)
                running = asyncio.ensure_future(load.run(plan.concurrency, stop))
                struck = []
                try:
                    for fault in fault_schedule(plan.faults, rng, kinds):
                        await asyncio.sleep(rng.uniform(*plan.gap_s))
                        outage = rng.uniform(*plan.outage_s)
                        struck.append(await strike(system, fault, outage, began, load.in_flight))
                        say(str(struck[-1]))
                    await asyncio.sleep(plan.gap_s[0])  # load on the recovered system, too
                except BaseException:
                    running.cancel()  # its clients must not outlive the system
                    await asyncio.gather(running, return_exceptions=True)
                    raise
                stop.set()
                outcomes = await running
                load_s = time.perf_counter() - began
                say(f"load stopped after {load_s:.0f}s and {len(outcomes)} orders; settling...")
                open_sagas = await _wait_for_sagas(client, plan.settle_s)
                violations = await _settled_audit(engine, provider, client, plan.settle_s)
                violations += await _stream_audit(settings, engine)
                settle_s = time.perf_counter() - began - load_s
                async with engine.connect() as conn:
                    rows = await conn.execute(_BY_STATUS)
                    by_status = {str(status): int(n) for status, n in rows}
                    told_not_held = await _told_not_held(conn, outcomes)
                alerts = await _alerts_after(alerting, struck)
        finally:
            if alerting is not None:
                await alerting.aclose()
            await provider.aclose()
            await engine.dispose()
        return ChaosReport(
            struck, outcomes, open_sagas, violations, by_status, load_s, settle_s,
            str(system.log_dir), dict(system.supervision.crash_restarts), told_not_held,
            *alerts,
        )  # fmt: skip


class _Alerting:
    """The run's Prometheus and its alert log, until `aclose`."""

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self.log = AlertLog(0.0)

    async def start(self, settings: Any, log_dir: Path, began: float) -> None:
        watch = watching(local_targets(settings), log_dir / "prometheus", began)
        self.log = await self._stack.enter_async_context(watch)

    async def aclose(self) -> None:
        await self._stack.aclose()


async def _alerting(settings: Any, log_dir: str, began: float) -> _Alerting | None:
    if prometheus_binary() is None:
        return None
    alerting = _Alerting()
    await alerting.start(settings, Path(log_dir), began)
    return alerting


async def _alerts_after(
    alerting: _Alerting | None, struck: list[Struck]
) -> tuple[list[dict[str, Any]], list[str], str | None]:
    """Each alert episode beside the faults it overlapped; those still firing once the
    system had settled (given a minute to clear)."""
    if alerting is None:
        return [], [], "no alerts watched: prometheus not installed (Debian's package)"
    await until_cleared(alerting.log, timeout_s=60.0)
    # A fault's reach outlasts its outage: a restarted app takes seconds to serve
    # its page again, and a rule sees it a scrape and an evaluation later.
    windows = [(s.fault.value, s.at_s, s.at_s + s.down_s + AFTERMATH_S) for s in struck]
    episodes = [e.summary(windows) for e in alerting.log.episodes]
    firing = [f"{e.alert} {e.labels}" for e in alerting.log.active if e.fired_at_s is not None]
    return episodes, firing, None


class _Load:
    """Clients placing orders one after another until told to stop."""

    def __init__(self, orders: OrderClient, mix: Mix, rng: random.Random) -> None:
        self._orders, self._mix, self._rng = orders, mix, rng
        self.outcomes: list[Outcome] = []
        self.in_flight = 0

    async def run(self, clients: int, stop: asyncio.Event) -> list[Outcome]:
        await asyncio.gather(*(self._client(stop) for _ in range(clients)))
        return self.outcomes

    async def _client(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            kind: Kind = self._mix.draw(self._rng)
            self.in_flight += 1
            try:
                self.outcomes.append(await self._orders.run(kind))
            finally:
                self.in_flight -= 1


async def _told_not_held(conn: Any, outcomes: list[Outcome]) -> list[str]:
    """Each order whose client was told an ending PostgreSQL does not hold."""
    told = {o.order_id: o.status for o in outcomes if o.order_id is not None}
    held = dict((await conn.execute(_HELD, {"ids": list(told)})).all())
    return [
        f"{order_id}: told {status}, held {held.get(order_id, 'no row')}"
        for order_id, status in told.items()
        if held.get(order_id) != status
    ]


async def _wait_for_sagas(client: Client, within_s: float) -> int:
    """Open sagas left after `within_s` (0: all ended)."""
    deadline = time.monotonic() + within_s
    while True:
        still_open = (await client.count_workflows(_OPEN_SAGAS)).count
        if still_open == 0 or time.monotonic() > deadline:
            return still_open
        await asyncio.sleep(1.0)


async def _stream_audit(settings: Any, engine: Any) -> list[Violation]:
    """Every published event in JetStream, each aggregate's in order, whichever
    NATS node died meanwhile (audit.stream_order)."""
    bus = await nats.connect(settings.nats().servers)
    try:
        return await stream_violations(bus.jetstream(), engine, RELAYED.outboxes)
    finally:
        await bus.close()


async def _settled_audit(
    engine: Any, provider: Any, client: Client, within_s: float
) -> list[Violation]:
    """The audit with no grace, asked again until clean while the outbox and the read
    model catch up; what it still finds after `within_s` is the verdict."""
    deadline = time.monotonic() + within_s
    while True:
        found = await run_audit(engine, Scope(grace=timedelta(0)), provider, client)
        if not found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(2.0)
