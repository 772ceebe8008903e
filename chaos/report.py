"""What a chaos run is asked to do (ChaosPlan) and what it found (ChaosReport, its verdict)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from audit import Violation
from bench.orders import Kind, Mix, Outcome, outcome_counts
from chaos.faults import Struck
from chaos.sampling import Samples
from relay.drain import PRUNE_EVERY_S

# A process (or the outbox) may grow this much after warm-up; judged only in a run this long.
MAX_GROWTH = 0.2
LONG_RUN_S = 600.0
# The payment provider's simulator stands in for a system outside ours and keeps
# every payment's books in memory by design: its growth is data, reported, not judged.
KEEPS_ITS_BOOKS = frozenset({"payment-provider"})


@dataclass(frozen=True)
class ChaosPlan:
    faults: int = 8
    gap_s: tuple[float, float] = (3.0, 10.0)  # load between faults
    outage_s: tuple[float, float] = (0.5, 3.0)  # how long a part stays down
    partition_s: tuple[float, float] = (5.0, 30.0)  # how long a network fault lasts
    concurrency: int = 6
    mix: Mix = field(default_factory=lambda: Mix(0.05, 0.05, 0.05, 0.15))
    choreography: float = 0.3  # of card-only orders, sent with "mode": "choreography"
    settle_s: float = 300.0  # for sagas, outbox and read model to finish after the load
    seed: int | None = None
    keep: bool = False  # leave the data and logs for a look
    # JetStream as a cluster of this many nodes, the events stream on all of
    # them, one node SIGKILLed at a time as a fault; 1: a single server.
    nats_nodes: int = 3
    # Run until this many orders are placed, the faults spread over them; None:
    # until the faults are done.
    orders: int | None = None
    progress_s: float = 30.0  # how often the run says how far it has got
    # The relay prunes published rows older than this (production keeps 7 days):
    # short, so that a long run shows the outbox bounded (chaos.witness keeps
    # the pruned rows' evidence for the stream audit).
    outbox_retention_s: int = 300
    # Two faults more, held this long, whose alerts must fire (chaos.long_faults).
    long_s: float | None = None


@dataclass
class ChaosReport:
    struck: list[Struck]
    outcomes: list[Outcome]
    open_sagas: int
    violations: list[Violation]
    orders_by_status: dict[str, int]  # what PostgreSQL holds at the end
    load_s: float
    settle_s: float
    log_dir: str
    # Apps the supervision restarted after they died unasked (not the faults' kills).
    crash_restarts: dict[str, int] = field(default_factory=dict)
    # Orders whose client was told one ending and PostgreSQL holds another (or none).
    told_not_held: list[str] = field(default_factory=list)
    # What the alert rules did, from the run's own Prometheus (chaos.alert_watch).
    alerts: list[dict[str, Any]] = field(default_factory=list)
    alerts_still_firing: list[str] = field(default_factory=list)
    alerts_note: str | None = None  # why there are none: no Prometheus here
    samples: Samples | None = None  # memory and outbox rows over the run
    # Fault kinds left out of the schedule, with why: never struck, never pretended.
    skipped: dict[str, str] = field(default_factory=dict)
    # Long faults whose alert did not fire (chaos.long_faults.untold).
    alerts_untold: list[str] = field(default_factory=list)
    outbox_retention_s: int = 300
    witnessed: int = 0  # published rows chaos.witness read (pruned ones included)

    @property
    def memory_grew(self) -> dict[str, float]:
        """Processes whose memory grew past MAX_GROWTH after warm-up, in a run long
        enough to tell (LONG_RUN_S); a short run's curves are mostly warm-up."""
        if self.samples is None or self.load_s < LONG_RUN_S:
            return {}
        grown = self.samples.growth().items()
        return {p: g for p, g in grown if g > MAX_GROWTH and p not in KEEPS_ITS_BOOKS}

    @property
    def outbox_growth(self) -> float | None:
        """The outbox rows' growth once pruning has had a full retention to work (and a
        minute to settle); None if the run ended too soon after that to tell."""
        if self.samples is None or self.load_s < LONG_RUN_S:
            return None
        return self.samples.outbox_growth(self.outbox_retention_s + PRUNE_EVERY_S + 60.0)

    @property
    def passed(self) -> bool:
        unfinished = [o for o in self.outcomes if o.status not in ("CONFIRMED", "CANCELLED")]
        outbox = self.outbox_growth
        return (
            not self.violations
            and self.open_sagas == 0
            and not unfinished
            and not self.told_not_held
            and not self.alerts_still_firing
            and not self.alerts_untold
            and not self.memory_grew
            and (outbox is None or outbox <= MAX_GROWTH)
        )

    def summary(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "orders": len(self.outcomes),
            "load_s": round(self.load_s, 1),
            "settle_s": round(self.settle_s, 1),
            "faults": [
                {"fault": s.fault.value, "at_s": round(s.at_s, 1), "down_s": round(s.down_s, 1),
                 "orders_in_flight": s.orders_in_flight, "detail": s.detail,
                 **({"held_long": True} if s.held_long else {})}
                for s in self.struck
            ],
            "skipped": self.skipped,
            "outcomes": outcome_counts(self.outcomes),
            "outcomes_by_mode": {
                mode: dict(Counter(o.status for o in self.outcomes if o.mode == mode))
                for mode in sorted({o.mode for o in self.outcomes})
            },
            # Orders meant to confirm that did not, and why: what the faults cost.
            "cost": [
                {"kind": o.kind.value, "order_id": o.order_id, "status": o.status,
                 "reason": o.reason}
                for o in self.outcomes
                if o.kind in (Kind.CONFIRM, Kind.STORE_CREDIT) and o.status != "CONFIRMED"
            ],
            "retried_requests": sum(o.retries for o in self.outcomes),
            "crash_restarts": self.crash_restarts,
            "orders_by_status": self.orders_by_status,
            "told_not_held": self.told_not_held,
            "open_sagas": self.open_sagas,
            "alerts": self.alerts,
            "alerts_still_firing": self.alerts_still_firing,
            "alerts_untold": self.alerts_untold,
            "alerts_note": self.alerts_note,
            "violations": [str(v) for v in self.violations],
            "memory_grew": self.memory_grew,
            "outbox_retention_s": self.outbox_retention_s,
            "outbox_growth": self.outbox_growth,
            "published_rows_witnessed": self.witnessed,
            **(self.samples.summary() if self.samples is not None else {}),
        }  # fmt: skip
