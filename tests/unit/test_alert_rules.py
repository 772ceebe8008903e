"""deploy/prometheus: the alert rules are valid and do what their tests say (promtool, from
Debian's `prometheus` package, which .ci/run installs), each names its runbook, and the
compose and local scrape configurations are valid and scrape the same jobs.

That every metric an alert reads is one the processes export is checked on a real
`make run` (tests/e2e/test_run_command.py), by scraping each of its pages."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from settings import Settings
from stack.prometheus_config import ALERTS, local_targets, render, write_local_config
from tests.alert_rules import DEPLOY, alerts, metric_names, watched_metrics
from tests.unit.test_docs import anchors

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: install Debian's `prometheus` package (.ci/run does)",
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_the_alert_rules_are_valid():
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(alerts())} rules found" in checked.stdout


@needs_promtool
def test_every_alert_fires_and_resolves_as_its_unit_test_says():
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@needs_promtool
def test_the_compose_scrape_config_is_valid_and_loads_the_rules():
    checked = promtool("check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 rule files found" in checked.stdout


@needs_promtool
def test_the_local_scrape_config_is_valid_for_any_ports(tmp_path):
    settings = Settings(worker_metrics_port=19102, api_port=18000, api_host="0.0.0.0")
    path = write_local_config(settings, tmp_path, interval_s=0.5)
    checked = promtool("check", "config", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load(path.read_text())
    assert config["global"]["scrape_interval"] == "500ms"
    assert config["rule_files"] == [str(ALERTS)]
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    assert targets["worker"] == ["127.0.0.1:19102"]
    assert targets["api"] == ["127.0.0.1:18000"]  # every address: scraped on loopback


def test_every_alert_has_a_unit_test():
    cases = yaml.safe_load((DEPLOY / "alerts_test.yml").read_text())["tests"]
    tested = {check["alertname"] for case in cases for check in case["alert_rule_test"]}
    assert tested == {rule["alert"] for rule in alerts()}
    firing = {
        check["alertname"]
        for case in cases
        for check in case["alert_rule_test"]
        if check["exp_alerts"]
    }
    assert firing == tested, "each alert is seen firing, not only quiet"


def test_every_alert_has_a_severity_a_summary_and_its_runbook_section():
    sections = anchors(OPERATIONS)
    for rule in alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"], name
        runbook = f"Runbook: docs/operations.md#{name.lower()}"
        assert rule["annotations"]["description"].endswith(runbook), name
        assert name.lower() in sections, f"docs/operations.md has no section {name}"


def test_the_issue_s_six_signals_each_have_an_alert_group():
    groups = {rule["group"] for rule in alerts()}
    assert {
        "stuck-sagas",
        "relay",
        "dead-letters",
        "breaker",
        "consumer-backlog",
        "two-phase-commit",
    } <= groups


def test_the_local_config_scrapes_the_jobs_compose_scrapes():
    compose = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = [job["job_name"] for job in compose["scrape_configs"]]
    assert list(local_targets(Settings())) == jobs
    assert compose["rule_files"] == ["alerts.yml"]


def test_an_endpoint_turned_off_is_not_scraped():
    assert "relay" not in local_targets(Settings(relay_metrics_port=0))


def test_metric_names_are_read_from_expressions_without_functions_labels_or_keywords():
    expr = (
        'max by (consumer) (a_pending + b_ack{x="y{z}"}) > 0\n'
        'and sum by (consumer) (rate(c_total{outcome!="retry"}[5m])) == 0'
    )
    assert metric_names(expr) == {"a_pending", "b_ack", "c_total"}
    assert metric_names("up == 0") == {"up"}
    assert "up" not in watched_metrics()
    assert {"saga_stuck_sagas", "saga_2pc_open_past_grace"} <= watched_metrics()


def test_rendering_keeps_the_jobs_in_the_order_given():
    text = render({"b": ["h:1"], "a": ["h:2"]}, interval_s=1)
    assert [job["job_name"] for job in yaml.safe_load(text)["scrape_configs"]] == ["b", "a"]
