"""The load's order mix and the benchmark's and chaos run's argument checks."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from bench.load import parse_args as bench_args
from bench.orders import Kind, Mix
from chaos.__main__ import parse_args as chaos_args
from chaos.faults import Fault
from chaos.run import fault_schedule


def test_a_plan_has_exactly_the_mixed_counts():
    mix = Mix(declined=0.1, out_of_stock=0.05, cancelled=0.2, store_credit=0.15)

    kinds = Counter(mix.plan(200, random.Random(1)))

    assert kinds == {
        Kind.DECLINE: 20,
        Kind.OUT_OF_STOCK: 10,
        Kind.CANCEL: 40,
        Kind.STORE_CREDIT: 30,
        Kind.CONFIRM: 100,
    }


def test_draws_follow_the_mix():
    mix = Mix(declined=0.5)
    rng = random.Random(3)

    kinds = Counter(mix.draw(rng) for _ in range(4000))

    assert set(kinds) == {Kind.DECLINE, Kind.CONFIRM}
    assert 1800 < kinds[Kind.DECLINE] < 2200


def test_a_mix_over_one_is_refused():
    with pytest.raises(ValueError, match="sum to at most 1"):
        Mix(declined=0.6, cancelled=0.6)


def test_every_fault_strikes_once_per_cycle():
    kinds = len(Fault)
    schedule = fault_schedule(2 * kinds + 2, random.Random(5))

    assert len(schedule) == 2 * kinds + 2
    assert set(schedule[:kinds]) == set(Fault) == set(schedule[kinds : 2 * kinds])


def test_a_fault_the_machine_cannot_make_is_left_out_of_every_cycle():
    skip = {Fault.POSTGRES_LATENCY}
    schedule = fault_schedule(3 * len(Fault), random.Random(5), skip)

    assert Fault.POSTGRES_LATENCY not in schedule
    assert set(schedule[: len(Fault) - 1]) == set(Fault) - skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--orders", "0"], "must be at least 1"),
        (["--declined", "1.5"], "not a fraction"),
        (["--declined", "0.6", "--cancelled", "0.6"], "sum to at most 1"),
        (["--rate", "-2"], "--rate must be above 0"),
        (["--rate", "5", "--concurrency", "3"], "not allowed with argument"),
        (["--sqlite-pragmas", "cache_size=1"], "of journal_mode, synchronous"),
        (["--sqlite-pragmas", "journal_mode"], "give PRAGMA=VALUE pairs"),
    ],
)
def test_the_benchmark_refuses_bad_arguments_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        bench_args(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_the_chaos_run_refuses_bad_gaps(capsys):
    with pytest.raises(SystemExit):
        chaos_args(["--min-gap", "5", "--max-gap", "1"])
    assert "--min-gap <= --max-gap" in capsys.readouterr().err


def test_the_chaos_run_draws_partitions_in_the_range_given_and_refuses_a_bad_one(capsys):
    assert chaos_args([]).partition_s == (5.0, 30.0)
    assert chaos_args(["--partition-s", "2", "4"]).partition_s == [2.0, 4.0]
    with pytest.raises(SystemExit):
        chaos_args(["--partition-s", "9", "3"])
    assert "--partition-s MIN <= MAX" in capsys.readouterr().err


def test_the_benchmark_reads_sqlite_pragmas_and_an_empty_list_as_sqlites_own():
    assert bench_args(
        ["--sqlite-pragmas", "journal_mode=wal, synchronous=normal"]
    ).sqlite_pragmas == {
        "journal_mode": "wal",
        "synchronous": "normal",
    }
    assert bench_args(["--sqlite-pragmas", ""]).sqlite_pragmas == {}
    assert bench_args([]).sqlite_pragmas is None  # the settings' default
