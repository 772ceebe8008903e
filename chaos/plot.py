"""The chaos run's PNG: orders ended per second and their latency with the faults
marked, each process's resident memory, and the outboxes' rows, over the run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server

import matplotlib.pyplot as plt  # after the backend is chosen

from bench.orders import Outcome
from chaos.faults import Struck
from chaos.sampling import Samples


def write_chaos_plot(
    path: Path, outcomes: Sequence[Outcome], struck: Sequence[Struck], samples: Samples
) -> None:
    fig, axes = plt.subplots(4, 1, figsize=(13, 14), sharex=True)
    ended, latency, memory, outbox = axes
    times = [o.ended_at - samples.began for o in outcomes if o.ended_at]
    if times:
        ended.hist(times, bins=max(1, int(max(times)) + 1), color="tab:blue")
    ended.set_ylabel("orders ended per second")
    latency.scatter(
        [o.ended_at - samples.began for o in outcomes if o.ended_at],
        [o.latency_ms / 1000 for o in outcomes if o.ended_at],
        s=3,
        alpha=0.5,
        color="tab:green",
    )
    latency.set_yscale("log")
    latency.set_ylabel("order latency, s (log)")
    for name, points in sorted(samples.memory.items()):
        memory.plot([t for t, _ in points], [mb for _, mb in points], label=name)
    memory.set_ylabel("resident memory, MB")
    memory.legend(fontsize="small", ncol=4)
    outbox.plot([t for t, _ in samples.outbox_rows], [n for _, n in samples.outbox_rows])
    outbox.set_ylabel("outbox rows (all services)")
    outbox.set_xlabel("seconds into the run")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        for s in struck:
            ax.axvspan(s.at_s, s.at_s + s.down_s, color="tab:red", alpha=0.15)
    for s in struck:
        ended.annotate(
            s.fault.value, (s.at_s, 1), xycoords=("data", "axes fraction"),
            rotation=90, fontsize=6, va="top", color="tab:red",
        )  # fmt: skip
    ended.set_title(f"chaos run: {len(outcomes)} orders, {len(struck)} faults (red)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
