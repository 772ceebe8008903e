"""`make bench`, tiny: it runs end to end and writes what it promises (figures, not targets)."""

from __future__ import annotations

import asyncio
import json

import pytest

from bench.load import main

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(300)]


async def test_the_load_benchmark_reports_saga_and_floor_and_writes_json_and_png(tmp_path):
    argv = ["--orders", "8", "--concurrency", "4", "--rounds", "1", "--out", str(tmp_path)]
    argv += ["--declined", "0.25", "--out-of-stock", "0.25"]

    await asyncio.to_thread(main, argv)

    report = json.loads((tmp_path / "load.json").read_text())
    assert report["outcomes"] == {
        "confirm": {"CONFIRMED": 4},
        "decline": {"CANCELLED": 2},
        "out_of_stock": {"CANCELLED": 2},
    }
    assert report["saga"]["workflows"] == report["floor"]["workflows"] == 8
    # create, fraud check, reserve, charge, ship, confirm: the floor runs as many.
    assert report["activities_per_saga"] == 6
    assert report["ratio"]["p50"] == round(report["saga"]["p50_ms"] / report["floor"]["p50_ms"], 2)
    assert (tmp_path / "load.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


SAGA_RUNS = ("temporal", "worker", "api", "relay", "consumers", "postgres", "nats",
             "payment-provider", "bench")  # fmt: skip


async def test_the_load_benchmark_breaks_the_cost_down_per_process_and_workflow(tmp_path, capsys):
    argv = ["--orders", "8", "--concurrency", "4", "--rounds", "2", "--out", str(tmp_path)]
    argv += ["--declined", "0", "--out-of-stock", "0", "--cancelled", "0", "--store-credit", "0.25"]

    await asyncio.to_thread(main, argv)

    cost = json.loads((tmp_path / "load.json").read_text())["breakdown"]
    saga, floor = cost["saga"], cost["floor"]
    assert saga["workflows"] == floor["workflows"] == 8
    # Every part a saga goes through spent CPU on it; choreography only idles.
    assert {name: saga["cpu_ms"][name] > 0 for name in SAGA_RUNS} == dict.fromkeys(SAGA_RUNS, True)
    assert saga["cpu_ms"]["choreography"] is not None
    # The floor is the server and its worker, which runs in the bench process.
    assert floor["cpu_ms"]["temporal"] > 0 and floor["cpu_ms"]["bench"] > 0
    assert saga["cpu_ms_total"] > floor["cpu_ms"]["temporal"]
    # The floor's history is fixed: 6 activities, each scheduled by a workflow task.
    assert (floor["history"]["sampled"], floor["history"]["activities"]) == (8, 6)
    assert floor["history"]["events_min"] == floor["history"]["events_max"] > 6 * 3
    # A saga runs at least the floor's 6 steps (as activities or local-activity
    # markers), and the 2 store-credit orders' 2PC children are in its figures.
    assert saga["history"]["activities"] + saga["history"]["markers"] >= 6
    assert saga["history"]["child_workflows"] == 2
    assert 6 * 3 < saga["history"]["events"] < 1000
    # Each step commits in PostgreSQL; the floor's are only the stack's background
    # (the relay's poll and lease, the sweeps), which the saga's include as well.
    assert saga["pg_xacts"] > max(6, floor["pg_xacts"]) and floor["pg_xacts"] >= 0
    assert "Temporal server" in capsys.readouterr().out


async def test_the_modes_benchmark_confirms_both_modes_and_writes_json(tmp_path):
    from bench.saga_modes import main as modes_main

    argv = ["--orders", "6", "--concurrency", "3", "--rounds", "2", "--out", str(tmp_path)]

    await asyncio.to_thread(modes_main, argv)

    report = json.loads((tmp_path / "saga_modes.json").read_text())
    for mode in ("orchestration", "choreography"):
        assert (report[mode]["confirmed"], report[mode]["unfinished"]) == (6, 0)
    ratio = report["ratio_choreography_to_orchestration"]
    assert ratio["p50_ms"] == round(
        report["choreography"]["p50_ms"] / report["orchestration"]["p50_ms"], 2
    )
