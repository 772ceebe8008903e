"""The load benchmark's PNG: latency distributions beside the floor's, and completions over time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server

import matplotlib.pyplot as plt  # after the backend is chosen


def write_plot(
    path: Path,
    latencies_ms: Mapping[str, Sequence[float]],
    completions_s: Sequence[float],
    title: str,
) -> None:
    """`latencies_ms` per series (saga, floor); `completions_s` the saga's end times."""
    fig, (cdf, timeline) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, values in latencies_ms.items():
        ordered = sorted(values)
        if ordered:
            cdf.plot(ordered, [(n + 1) / len(ordered) for n in range(len(ordered))], label=name)
    cdf.set_xscale("log")
    cdf.set_xlabel("start to end, ms (log)")
    cdf.set_ylabel("fraction of workflows")
    cdf.grid(True, which="both", alpha=0.3)
    cdf.legend()
    cdf.set_title("latency, cumulative")
    if completions_s:
        first = min(completions_s)
        seconds = [t - first for t in completions_s]
        buckets = int(max(seconds)) + 1
        timeline.hist(seconds, bins=buckets, color="tab:blue")
    timeline.set_xlabel("seconds into the saga rounds")
    timeline.set_ylabel("sagas ended per second")
    timeline.set_title("throughput over time")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
