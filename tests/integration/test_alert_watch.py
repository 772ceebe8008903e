"""The chaos run's Prometheus: a real one scrapes a page, evaluates a rule, and the
watch records the alert's episode from pending through firing to cleared."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from chaos.alert_watch import AlertLog, prometheus_binary, until_cleared, watching
from observability.endpoint import serve
from stack.ports import LOOPBACK, free_port
from tests.factories import eventually

needs_prometheus = pytest.mark.skipif(
    prometheus_binary() is None,
    reason="prometheus not found: install Debian's `prometheus` package (.ci/run does)",
)

RULES = """groups:
  - name: probe
    rules:
      - alert: RelayLagHigh
        expr: max by (service) (saga_relay_lag_seconds) > 30
        for: 2s
"""


def test_the_log_opens_fires_and_clears_an_episode_per_alert_and_labels():
    log = AlertLog(began=100.0)
    lag = {"labels": {"alertname": "RelayLagHigh", "service": "orders"}, "state": "pending"}
    log.observe([lag], 101.0)
    log.observe([{**lag, "state": "firing"}], 103.0)
    log.observe([{**lag, "state": "firing"}], 104.0)
    log.observe([], 110.0)

    [episode] = log.episodes
    assert (episode.alert, episode.labels) == ("RelayLagHigh", {"service": "orders"})
    assert (episode.pending_at_s, episode.fired_at_s, episode.cleared_at_s) == (1.0, 3.0, 10.0)
    assert not log.active
    faults = [("postgres-partition", 0.5, 2.0), ("kill-relay", 20.0, 21.0)]
    assert episode.summary(faults)["during_faults"] == ["postgres-partition"]


@needs_prometheus
async def test_a_real_prometheus_fires_and_clears_a_rule_on_a_scraped_page(tmp_path: Path):
    lag = {"value": 100.0}

    async def page() -> str:
        return f'saga_relay_lag_seconds{{service="orders"}} {lag["value"]}\n'

    port = free_port()
    server = await serve(LOOPBACK, port, page)
    assert server is not None
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    try:
        async with watching(
            {"relay": [f"{LOOPBACK}:{port}"]},
            tmp_path / "prom",
            time.perf_counter(),
            interval_s=0.5,
            rules=rules,
        ) as log:
            await eventually(
                lambda: _first_fired(log), lambda fired: fired is not None, deadline_s=30
            )
            lag["value"] = 0.0
            assert await until_cleared(log, timeout_s=30)
    finally:
        server.close()

    [episode] = log.episodes
    assert episode.alert == "RelayLagHigh" and episode.labels["service"] == "orders"
    assert episode.fired_at_s is not None and episode.cleared_at_s is not None
    assert episode.pending_at_s <= episode.fired_at_s < episode.cleared_at_s
    assert log.polls > 0


async def _first_fired(log: AlertLog) -> float | None:
    return next((e.fired_at_s for e in log.episodes if e.fired_at_s is not None), None)
