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
