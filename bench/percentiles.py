"""p50/p95/p99 of a list of latencies, the same way in every benchmark."""

from __future__ import annotations

import statistics
from collections.abc import Iterable


def percentiles(values_ms: Iterable[float], digits: int = 1) -> dict[str, float]:
    """{"p50_ms", "p95_ms", "p99_ms"}; empty when there are no values."""
    ordered = sorted(values_ms)
    if not ordered:
        return {}
    # quantiles() needs two points; one value is every percentile of itself.
    cuts = statistics.quantiles(ordered, n=100) if len(ordered) >= 2 else ordered * 99
    return {
        "p50_ms": round(statistics.median(ordered), digits),
        "p95_ms": round(cuts[94], digits),
        "p99_ms": round(cuts[98], digits),
    }
