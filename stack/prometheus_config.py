"""A Prometheus configuration for the processes `make run` starts, beside compose's.

    python -m stack.prometheus_config DIR   # writes DIR/prometheus.yml

deploy/prometheus/prometheus.yml finds the compose services by name; this
writes the same jobs for the loopback ports settings give the local processes,
with the same alert rules, so a Prometheus started beside `make run` (or the
chaos run's) alerts as the compose one does. It is written as JSON, which
Prometheus reads: YAML takes JSON as it is.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from settings import Settings
from stack.ports import LOOPBACK
from stack.preflight import metrics_endpoints
from startup import load_settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
ALERTS = DEPLOY / "alerts.yml"
_ANY_ADDRESS = ("0.0.0.0", "::", "")


def local_targets(settings: Settings) -> dict[str, list[str]]:
    """Job (as in the compose config) → the `host:port` of its page; an endpoint that is
    off (port 0) is left out."""
    endpoints = [*metrics_endpoints(settings), ("api", settings.api_host, settings.api_port)]
    return {job: [f"{_reachable(host)}:{port}"] for job, host, port in endpoints if port}


def render(
    targets: Mapping[str, Sequence[str]], rules: Path = ALERTS, interval_s: float = 15.0
) -> str:
    """A whole configuration: scrape and evaluate every `interval_s`, rules from `rules`."""
    interval = f"{round(interval_s * 1000)}ms"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules.resolve())],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(hosts)}]}
            for job, hosts in targets.items()
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def write_local_config(settings: Settings, directory: Path, interval_s: float = 15.0) -> Path:
    """`directory`/prometheus.yml for the local processes; returns its path."""
    path = directory / "prometheus.yml"
    path.write_text(render(local_targets(settings), interval_s=interval_s))
    return path


def _reachable(host: str) -> str:
    # A page listening on every address is scraped on loopback.
    return LOOPBACK if host in _ANY_ADDRESS else host


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="where to write prometheus.yml")
    parser.add_argument("--interval-s", type=float, default=15.0, help="scrape and evaluate")
    args = parser.parse_args(argv)
    settings = load_settings("stack.prometheus_config")
    path = write_local_config(settings, args.directory, args.interval_s)
    print(f"wrote {path}: prometheus --config.file={path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
