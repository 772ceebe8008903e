"""Where a saga's cost goes: CPU ms per workflow of each process, history events,
PostgreSQL transactions and published events per workflow, for the saga and for the
floor, and the relay's CPU per event it published.

The meter reads every process's CPU time and the database's transaction count at
each boundary between phases (after a settle, so work a phase left queued, and
PostgreSQL's statistics, land in that phase); a series' figures are the sums over
its phases divided by the workflows that ended in them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.cpu import Reading, sample, spent_ms
from bench.pg_xacts import SETTLE_S

# Process keys as the stack names them, and how the table shows them.
PROCESSES: Mapping[str, str] = {
    "temporal": "Temporal server",
    "worker": "worker",
    "api": "API",
    "relay": "relay",
    "consumers": "consumers",
    "choreography": "choreography",
    "postgres": "PostgreSQL",
    "nats": "NATS",
    "payment-provider": "payment simulator",
    "bench": "bench (floor: + its worker)",
}
BENCH = "bench"  # this process alone: the stack runs as its descendants
# Below this the floor's figure is a process idling (polls, timers): no ratio to it.
RATIO_FLOOR_MS = 1.0
SERIES = ("saga", "floor")


@dataclass
class Totals:
    workflows: int = 0
    cpu_ms: dict[str, float] = field(default_factory=dict)
    restarted: set[str] = field(default_factory=set)
    xacts: int = 0
    events: int = 0  # the relay published


@dataclass
class Meter:
    pids: Callable[[], Mapping[str, int | None]]
    xacts: Callable[[], Awaitable[int]]
    events: Callable[[], Awaitable[int]]  # published by the relay so far
    settle_s: float = SETTLE_S
    totals: dict[str, Totals] = field(default_factory=lambda: {s: Totals() for s in SERIES})
    _cpu: dict[str, Reading] = field(default_factory=dict)
    _xacts: int = 0
    _events: int = 0

    async def mark(self) -> None:
        """Where the next phase begins."""
        self._cpu, self._xacts, self._events = await self._read()

    async def phase_ended(self, series: str, workflows: int) -> None:
        """Charge everything since the last mark to `series`; `workflows` ended in it."""
        cpu, xacts, events = await self._read()
        totals = self.totals[series]
        totals.workflows += workflows
        totals.xacts += xacts - self._xacts
        totals.events += events - self._events
        for name, ms in spent_ms(self._cpu, cpu).items():
            if ms is None:
                totals.restarted.add(name)
            else:
                totals.cpu_ms[name] = totals.cpu_ms.get(name, 0.0) + ms
        self._cpu, self._xacts, self._events = cpu, xacts, events

    async def _read(self) -> tuple[dict[str, Reading], int, int]:
        await asyncio.sleep(self.settle_s)
        xacts, events = await self.xacts(), await self.events()
        return sample(self.pids(), alone=[BENCH]), xacts, events


def per_workflow(totals: Totals) -> dict[str, Any]:
    """A series' figures per workflow ended; a process restarted during it has none."""
    n = totals.workflows
    if not n:
        return {"workflows": 0}
    cpu = {
        name: None if name in totals.restarted else round(totals.cpu_ms.get(name, 0.0) / n, 1)
        for name in PROCESSES
    }
    relay = None if "relay" in totals.restarted else totals.cpu_ms.get("relay", 0.0)
    return {
        "workflows": n,
        "cpu_ms": cpu,
        "cpu_ms_total": round(sum(ms for ms in cpu.values() if ms is not None), 1),
        "pg_xacts": round(totals.xacts / n, 1),
        "events": round(totals.events / n, 1),
        # Issue 19's figure: what the relay spends on each event it publishes.
        "relay_cpu_ms_per_event": (
            round(relay / totals.events, 2) if relay is not None and totals.events else None
        ),
    }


def ratios(saga: Mapping[str, Any], floor: Mapping[str, Any]) -> dict[str, float | None]:
    """saga / floor of each CPU figure; None where the floor's is under RATIO_FLOOR_MS."""
    a, b = saga.get("cpu_ms", {}), floor.get("cpu_ms", {})
    out: dict[str, float | None] = {}
    for name in (*PROCESSES, "total"):
        x = saga.get("cpu_ms_total") if name == "total" else a.get(name)
        y = floor.get("cpu_ms_total") if name == "total" else b.get(name)
        out[name] = round(x / y, 2) if x is not None and y and y >= RATIO_FLOOR_MS else None
    return out


def _cell(value: object, width: int, suffix: str = "") -> str:
    return f"{'-' if value is None else f'{value}{suffix}':>{width}}"


def _row(label: str, saga: object, floor: object, ratio: object = None) -> str:
    return f"{label:<30}{_cell(saga, 9)}{_cell(floor, 9)}{_cell(ratio, 12, 'x')}"


def format_table(breakdown: Mapping[str, Any]) -> str:
    """The breakdown as the benchmark prints it: a row per process, then the totals."""
    saga, floor, ratio = breakdown["saga"], breakdown["floor"], breakdown["ratio"]
    s_cpu, f_cpu = saga.get("cpu_ms", {}), floor.get("cpu_ms", {})
    lines = [f"{'CPU ms per workflow':<30}{'saga':>9}{'floor':>9}{'saga/floor':>12}"]
    lines += [
        _row(label, s_cpu.get(name), f_cpu.get(name), ratio[name])
        for name, label in PROCESSES.items()
    ]
    lines.append(_row("total", saga.get("cpu_ms_total"), floor.get("cpu_ms_total"), ratio["total"]))
    events = [series.get("history", {}).get("events") for series in (saga, floor)]
    lines.append(_row("Temporal history events", *events))
    lines.append(_row("PostgreSQL xacts", saga.get("pg_xacts"), floor.get("pg_xacts")))
    lines.append(_row("events published", saga.get("events"), floor.get("events")))
    lines.append(
        _row(
            "relay CPU ms per event",
            saga.get("relay_cpu_ms_per_event"),
            floor.get("relay_cpu_ms_per_event"),
        )
    )
    lines.append(
        f"(per workflow ended: {saga.get('workflows', 0)} sagas, {floor.get('workflows', 0)} "
        "floor workflows; a saga's history includes its 2PC child's; '-': restarted, none, "
        f"or no ratio to under {RATIO_FLOOR_MS} ms)"
    )
    return "\n".join(lines)
