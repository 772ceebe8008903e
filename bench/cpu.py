"""CPU time of the stack's processes, read from /proc (Linux), for the benchmark's breakdown.

A process's figure is its own user + system time and, unless asked for alone,
that of every descendant: PostgreSQL's backends are children of the
postmaster. A descendant that exited and was reaped moved its time into its
parent's cutime/cstime, so counting those for every live process keeps a tree's
total continuous while backends come and go.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    own_ticks: int  # utime + stime
    reaped_ticks: int  # cutime + cstime: children that exited and were waited for


@dataclass(frozen=True)
class Reading:
    """One process tree at one moment; the pid tells a restart apart."""

    pid: int
    cpu_ms: float


def parse_stat(text: str) -> ProcStat:
    """One /proc/<pid>/stat line. The command name may hold spaces and parentheses,
    so the fields are counted from its last ')'."""
    head, _, tail = text.rpartition(")")
    pid = int(head.split("(", 1)[0])
    fields = tail.split()
    # tail's fields start at field 3 of proc(5): state, ppid (4), ... utime (14) .. cstime (17).
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return ProcStat(pid, int(fields[1]), utime + stime, cutime + cstime)


def read_table(proc: Path = PROC) -> dict[int, ProcStat]:
    """Every process's stat now; processes that vanish while being read are left out."""
    table = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue
        table[stat.pid] = stat
    return table


def descendants(root: int, table: Mapping[int, ProcStat]) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in table.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found, frontier = [], [root]
    while frontier:
        kids = [kid for pid in frontier for kid in children.get(pid, [])]
        found += kids
        frontier = kids
    return found


def tree_ticks(root: int, table: Mapping[int, ProcStat], *, alone: bool = False) -> int | None:
    """Clock ticks of `root` (and its descendants unless `alone`); None if it is gone."""
    if root not in table:
        return None
    if alone:
        return table[root].own_ticks
    pids: Iterable[int] = [root, *descendants(root, table)]
    return sum(table[p].own_ticks + table[p].reaped_ticks for p in pids)


def sample(
    pids: Mapping[str, int | None], alone: Iterable[str] = (), proc: Path = PROC
) -> dict[str, Reading]:
    """The CPU ms so far of each named process tree (the names in `alone`: without
    descendants); names whose process is not running are left out."""
    table = read_table(proc)
    ms_per_tick = 1000 / os.sysconf("SC_CLK_TCK")
    alone = set(alone)
    readings = {}
    for name, pid in pids.items():
        ticks = None if pid is None else tree_ticks(pid, table, alone=name in alone)
        if pid is not None and ticks is not None:
            readings[name] = Reading(pid, ticks * ms_per_tick)
    return readings


def spent_ms(
    before: Mapping[str, Reading], after: Mapping[str, Reading]
) -> dict[str, float | None]:
    """CPU ms each process spent between two samples; None when it was restarted (or
    not running) in between, as its counters began again."""
    spent: dict[str, float | None] = {}
    for name in before.keys() | after.keys():
        start, end = before.get(name), after.get(name)
        if start is None or end is None or start.pid != end.pid:
            spent[name] = None
        else:
            spent[name] = end.cpu_ms - start.cpu_ms
    return spent
