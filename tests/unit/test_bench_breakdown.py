"""The benchmark's cost breakdown: reading /proc, adding up process trees, the table."""

from __future__ import annotations

import os
from typing import Any

import pytest

from bench.breakdown import PROCESSES, Totals, format_table, per_workflow, ratios
from bench.cpu import ProcStat, Reading, parse_stat, read_table, sample, spent_ms, tree_ticks


def stat_line(pid: int, comm: str, ppid: int, utime: int, stime: int, cut: int, cst: int) -> str:
    # proc(5): pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt
    # cmajflt utime stime cutime cstime priority nice ...
    return f"{pid} ({comm}) S {ppid} 1 1 0 -1 4194560 10 0 0 0 {utime} {stime} {cut} {cst} 20 0 1 0"


def test_a_stat_line_is_read_past_a_command_name_with_spaces_and_parentheses():
    stat = parse_stat(stat_line(42, "postgres: saga (idle) x)", 7, 30, 12, 5, 3))

    assert stat == ProcStat(pid=42, ppid=7, own_ticks=42, reaped_ticks=8)


def test_a_tree_adds_live_descendants_and_children_already_reaped():
    table = {
        1: ProcStat(1, 0, 100, 0),  # not in the tree
        10: ProcStat(10, 1, 5, 40),  # the postmaster: 40 ticks of backends gone
        11: ProcStat(11, 10, 7, 0),
        12: ProcStat(12, 11, 3, 2),  # a grandchild
        20: ProcStat(20, 1, 9, 0),
    }

    assert tree_ticks(10, table) == 5 + 40 + 7 + 3 + 2
    assert tree_ticks(10, table, alone=True) == 5
    assert tree_ticks(99, table) is None


def test_read_table_skips_what_is_not_a_process_or_vanished(tmp_path):
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "stat").write_text(stat_line(7, "nats-server", 1, 4, 1, 0, 0))
    (tmp_path / "8").mkdir()  # exited between the listing and the read: no stat file
    (tmp_path / "self").mkdir()
    (tmp_path / "uptime").write_text("1.0 2.0")

    assert read_table(tmp_path) == {7: ProcStat(7, 1, 5, 0)}


def test_sample_reads_this_process_from_the_real_proc():
    readings = sample({"me": os.getpid(), "gone": None}, alone=["me"])

    assert set(readings) == {"me"}
    assert readings["me"].pid == os.getpid() and readings["me"].cpu_ms > 0


def test_a_process_restarted_between_samples_has_no_figure():
    before = {"worker": Reading(100, 50.0), "api": Reading(200, 10.0), "relay": Reading(300, 1.0)}
    after = {"worker": Reading(100, 80.0), "api": Reading(201, 2.0)}

    assert spent_ms(before, after) == {"worker": 30.0, "api": None, "relay": None}


def test_per_workflow_divides_by_the_workflows_ended_and_marks_restarts():
    totals = Totals(workflows=4, cpu_ms={"temporal": 400.0, "worker": 100.0}, xacts=90)
    totals.restarted.add("api")

    figures = per_workflow(totals)

    assert figures["cpu_ms"]["temporal"] == 100.0
    assert figures["cpu_ms"]["api"] is None
    assert figures["cpu_ms"]["nats"] == 0.0  # listed, never sampled: nothing spent
    assert figures["cpu_ms_total"] == 125.0
    assert figures["pg_xacts"] == 22.5
    assert per_workflow(Totals()) == {"workflows": 0}


def test_the_relay_cpu_per_event_is_its_cpu_over_the_events_it_published():
    totals = Totals(workflows=4, cpu_ms={"relay": 30.0}, events=24)

    figures = per_workflow(totals)

    assert (figures["events"], figures["relay_cpu_ms_per_event"]) == (6.0, 1.25)
    totals.restarted.add("relay")
    assert per_workflow(totals)["relay_cpu_ms_per_event"] is None
    assert per_workflow(Totals(workflows=1))["relay_cpu_ms_per_event"] is None


def test_ratios_are_saga_over_floor_and_none_where_the_floor_only_idled():
    saga = {"cpu_ms": {"temporal": 90.0, "worker": 30.0, "relay": 9.0}, "cpu_ms_total": 129.0}
    floor = {"cpu_ms": {"temporal": 60.0, "worker": 0.1, "relay": 3.0}, "cpu_ms_total": 64.5}

    got = ratios(saga, floor)

    assert (got["temporal"], got["relay"], got["total"]) == (1.5, 3.0, 2.0)
    assert got["worker"] is None and got["api"] is None


def test_the_table_has_a_row_per_process_and_the_totals():
    saga: dict[str, Any] = {"workflows": 2, "cpu_ms": dict.fromkeys(PROCESSES, 4.0),
            "cpu_ms_total": 40.0,
            "pg_xacts": 31.5, "history": {"events": 52.0},
            "events": 6.0, "relay_cpu_ms_per_event": 0.9}  # fmt: skip
    floor: dict[str, Any] = {"workflows": 2, "cpu_ms": dict.fromkeys(PROCESSES, 2.0),
             "cpu_ms_total": 20.0,
             "pg_xacts": 0.5, "history": {"events": 40.0}}  # fmt: skip
    saga["cpu_ms"]["api"] = None
    floor["cpu_ms"]["worker"] = 0.1

    table = format_table({"saga": saga, "floor": floor, "ratio": ratios(saga, floor)})

    rows = {line[:30].strip(): line[30:].split() for line in table.splitlines()[1:-1]}
    assert set(PROCESSES.values()) <= set(rows)
    assert rows["Temporal server"] == ["4.0", "2.0", "2.0x"]
    assert rows["API"] == ["-", "2.0", "-"]
    assert rows["worker"] == ["4.0", "0.1", "-"]
    assert rows["total"] == ["40.0", "20.0", "2.0x"]
    assert rows["Temporal history events"] == ["52.0", "40.0", "-"]
    assert rows["PostgreSQL xacts"] == ["31.5", "0.5", "-"]
    assert rows["events published"] == ["6.0", "-", "-"]
    assert rows["relay CPU ms per event"] == ["0.9", "-", "-"]


@pytest.mark.parametrize("most", [1, 3, 10])
def test_a_history_sample_spreads_over_the_run(most):
    from bench.history_events import evenly

    ids = [str(n) for n in range(10)]
    picked = evenly(ids, most)

    assert len(picked) == most and picked[0] == "0" and len(set(picked)) == most
    if most == 3:
        assert picked == ["0", "3", "6"]
