"""The chaos run's verdict on what it sampled and what its alerts did: memory and the
outbox judged after warm-up in a long run, long faults placed and held to their alerts."""

from __future__ import annotations

from typing import Any

import pytest

from bench.orders import Kind, Outcome
from chaos.__main__ import parse_args
from chaos.faults import Fault, Struck
from chaos.long_faults import MIN_LONG_S, untold, with_long_faults
from chaos.report import LONG_RUN_S, ChaosReport
from chaos.sampling import Samples


def report(load_s: float, samples: Samples, **fields) -> ChaosReport:
    ended = [Outcome(Kind.CONFIRM, "o-1", "CONFIRMED")]
    return ChaosReport([], ended, 0, [], {"CONFIRMED": 1}, load_s, 1.0, "/tmp", **fields,
                       samples=samples)  # fmt: skip


def steady_then(rows_late: int, retention_s: int = 300, run_s: float = 1500.0) -> Samples:
    samples = Samples(0.0)
    for t in range(0, int(run_s), 5):
        # Rising while the first retention fills, then flat; `rows_late` for the last fifth.
        rows = min(t, retention_s) * 40 if t < run_s * 0.8 else rows_late
        samples.outbox_rows.append((float(t), rows))
    return samples


def test_an_outbox_that_levels_off_once_pruning_runs_passes_and_one_that_keeps_growing_fails():
    level = report(1500.0, steady_then(12_600))
    growing = report(1500.0, steady_then(12_000 * 2))

    assert level.outbox_growth == pytest.approx(0.05)
    assert level.passed
    assert growing.outbox_growth == pytest.approx(1.0)
    assert not growing.passed
    assert growing.summary()["outbox_growth"] == pytest.approx(1.0)


def test_a_run_too_short_for_the_retention_does_not_judge_the_outbox():
    short = report(LONG_RUN_S - 1, steady_then(24_000, run_s=LONG_RUN_S - 1))
    barely = report(LONG_RUN_S, steady_then(24_000, run_s=LONG_RUN_S), outbox_retention_s=3600)

    assert short.outbox_growth is None and short.passed
    assert barely.outbox_growth is None and barely.passed


def test_memory_growth_fails_a_long_run_except_for_the_simulator_that_keeps_its_books():
    samples = Samples(0.0)
    for t in range(0, 1000, 5):
        late = t > 800
        samples.memory.setdefault("worker", []).append((float(t), 130.0 if late else 100.0))
        samples.memory.setdefault("payment-provider", []).append(
            (float(t), 200.0 if late else 50.0)
        )

    assert report(1000.0, samples).memory_grew == {"worker": 0.3}
    assert report(LONG_RUN_S - 1, samples).memory_grew == {}


def test_the_long_faults_go_in_at_the_thirds_of_the_schedule():
    schedule = [Fault.KILL_WORKER] * 6

    planned = with_long_faults(schedule, 150.0)

    assert [n for n, (_, long) in enumerate(planned) if long] == [2, 5]
    assert {fault for fault, long in planned if long} == {
        Fault.PROVIDER_PARTITION,
        Fault.KILL_RELAY,
    }
    assert with_long_faults(schedule, None) == [(f, False) for f in schedule]


def episode(alert: str, fired_at: float | None, **labels: str) -> dict[str, Any]:
    return {"alert": alert, "labels": labels, "pending_at_s": 100.0, "fired_at_s": fired_at,
            "cleared_at_s": 400.0, "during_faults": []}  # fmt: skip


def test_a_long_fault_whose_alert_never_fired_while_it_lasted_is_named():
    partition = Struck(Fault.PROVIDER_PARTITION, 100.0, 150.0, 8, "dropped", held_long=True)
    relay = Struck(Fault.KILL_RELAY, 600.0, 150.0, 8, "killed", held_long=True)
    told = [
        episode("PaymentBreakerOpen", 140.0, breaker="payment-provider"),
        episode("MetricsEndpointDown", 725.0, job="relay"),
    ]
    # Pending only; another job's page; fired long after the fault.
    untold_episodes = [
        episode("PaymentBreakerOpen", None),
        episode("MetricsEndpointDown", 725.0, job="worker"),
        episode("MetricsEndpointDown", 900.0, job="relay"),
    ]

    assert untold([partition, relay], told) == []
    missed = untold([partition, relay], untold_episodes)
    assert missed == [
        "PaymentBreakerOpen did not fire during provider-partition at 100s",
        "MetricsEndpointDown {'job': 'relay'} did not fire during kill-relay at 600s",
    ]
    assert not report(1.0, Samples(0.0), alerts_untold=missed).passed


def test_the_chaos_run_refuses_a_long_fault_shorter_than_the_rules_for(capsys):
    assert parse_args(["--long-s", str(MIN_LONG_S)]).long_s == MIN_LONG_S
    with pytest.raises(SystemExit):
        parse_args(["--long-s", "60"])
    assert "--long-s must be at least 130" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--outbox-retention-s", "30"])
    assert "--outbox-retention-s must be at least 120" in capsys.readouterr().err
