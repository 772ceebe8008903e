"""Reading deploy/prometheus/alerts.yml in tests: its alerts, and the metrics they watch."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
# Made by Prometheus for every target, not exported by any process.
SYNTHETIC = frozenset({"up"})
_KEYWORDS = frozenset(
    {"by", "without", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool"}
)
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def alerts() -> list[dict[str, Any]]:
    """Every alerting rule, each with the name of its group under `group`."""
    groups = yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
    return [{**rule, "group": g["name"]} for g in groups for rule in g["rules"]]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (enough PromQL for our rules)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings may hold anything
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    # Label lists of aggregations and vector matching.
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in _NAME.finditer(text):
        called = text[match.end() :].lstrip().startswith("(")
        if not called and match.group() not in _KEYWORDS:
            names.add(match.group())
    return names


def watched_metrics() -> set[str]:
    """Every metric some alert reads that one of our processes must export."""
    return {name for rule in alerts() for name in metric_names(rule["expr"])} - SYNTHETIC
