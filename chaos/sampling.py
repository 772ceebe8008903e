"""What the chaos run watches while it runs: its progress, each process's resident
memory, and how many rows the outboxes hold.

Every `every_s` the sampler reads each app's and server's resident set from
`/proc/<pid>/status` (the process the supervision started; a restarted one is
read anew, so a curve steps down where a fault killed it), counts the outbox
rows, and every `progress_s` says how far the run has got. After the run,
`growth` compares each process's memory late in the run with early in it,
warm-up left out: a leak shows as a curve that keeps rising.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Table, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncEngine

# The first fifth of a run is warm-up: imports, pools filling, caches.
WARM_UP = 0.2


def resident_mb(pid: int | None) -> float | None:
    """The process's resident set in MB, or None if it is not running."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return None


@dataclass
class Samples:
    began: float
    memory: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    outbox_rows: list[tuple[float, int]] = field(default_factory=list)

    def growth(self) -> dict[str, float]:
        """Per process: the median of the run's last fifth over that of the fifth after
        warm-up, less one (0.2: grew by 20 %)."""
        grown = {}
        for name, points in self.memory.items():
            if len(points) < 10:
                continue
            end = points[-1][0]
            grown[name] = _late_over_early([mb for t, mb in points if t >= end * WARM_UP])
        return grown

    def outbox_growth(self, from_s: float) -> float | None:
        """The outbox rows as growth() reads memory, from `from_s` on (once pruning has
        had a full retention to work); None with fewer than ten samples after it."""
        after = [float(n) for t, n in self.outbox_rows if t >= from_s]
        return _late_over_early(after) if len(after) >= 10 else None

    def summary(self) -> dict[str, Any]:
        return {
            "memory_mb": {
                name: [(round(t, 1), round(mb, 1)) for t, mb in points]
                for name, points in self.memory.items()
            },
            "memory_growth": self.growth(),
            "outbox_rows": self.outbox_rows,
        }


def _late_over_early(values: Sequence[float]) -> float:
    fifth = max(1, len(values) // 5)
    early, late = statistics.median(values[:fifth]), statistics.median(values[-fifth:])
    return round(late / early - 1, 3) if early else 0.0


async def sample(
    samples: Samples,
    pids: Callable[[], dict[str, int | None]],
    engine: AsyncEngine,
    outboxes: Sequence[Table],
    progress: Callable[[], str],
    say: Callable[[str], None],
    *,
    every_s: float = 5.0,
    progress_s: float = 30.0,
) -> None:
    """Sample until cancelled."""
    count = select(func.count()).select_from(
        union_all(*(select(t.c.event_id) for t in outboxes)).subquery()
    )
    next_progress = time.perf_counter() + progress_s
    while True:
        at = time.perf_counter() - samples.began
        for name, pid in pids().items():
            mb = resident_mb(pid)
            if mb is not None:
                samples.memory.setdefault(name, []).append((at, mb))
        # The database may be down or cut off by a fault: that sample is skipped.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0), engine.connect() as conn:
                samples.outbox_rows.append((round(at, 1), int(await conn.scalar(count) or 0)))
        if time.perf_counter() >= next_progress:
            say(f"  [{at:6.0f}s] {progress()}")
            next_progress += progress_s
        await asyncio.sleep(every_s)
