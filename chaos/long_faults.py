"""Faults held past the alert rules' `for:`, to show that an operator is told.

The usual faults end within seconds, before a rule's `for:` (a minute or more)
has run out: their alerts only go pending. A run given `long_s` adds two
faults held that long, at a third and two thirds of its schedule: the payment
provider partitioned (the breaker opens on the timeouts: PaymentBreakerOpen)
and the relay killed (its page stays down: MetricsEndpointDown for job
"relay"; its lag gauge goes down with it, so RelayLagHigh cannot speak). Each
must have fired while its fault lasted; one that did not fails the run, as
one still firing after the run settled does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chaos.alert_watch import AFTERMATH_S
from chaos.faults import Fault, Struck

# What each long fault must make fire: the alert, and labels it must carry.
MUST_FIRE: dict[Fault, tuple[str, dict[str, str]]] = {
    Fault.PROVIDER_PARTITION: ("PaymentBreakerOpen", {}),
    Fault.KILL_RELAY: ("MetricsEndpointDown", {"job": "relay"}),
}
# The longest `for:` among those alerts (MetricsEndpointDown's 2 m), and a
# scrape, an evaluation and a poll of the watch after it.
MIN_LONG_S = 130.0


def with_long_faults(schedule: Sequence[Fault], long_s: float | None) -> list[tuple[Fault, bool]]:
    """The schedule as (fault, held long?), the long ones added at its thirds."""
    planned = [(fault, False) for fault in schedule]
    if long_s is None:
        return planned
    for n, fault in enumerate(MUST_FIRE):
        planned.insert(len(schedule) * (n + 1) // (len(MUST_FIRE) + 1) + n, (fault, True))
    return planned


def untold(long_faults: Sequence[Struck], episodes: Sequence[dict[str, Any]]) -> list[str]:
    """The long faults whose alert never fired while they lasted, each as a line."""
    missed = []
    for struck in long_faults:
        alert, labels = MUST_FIRE[struck.fault]
        until = struck.at_s + struck.down_s + AFTERMATH_S
        fired = any(
            e["alert"] == alert
            and labels.items() <= e["labels"].items()
            and e["fired_at_s"] is not None
            and struck.at_s <= e["fired_at_s"] <= until
            for e in episodes
        )
        if not fired:
            named = f"{alert} {labels}" if labels else alert
            missed.append(f"{named} did not fire during {struck.fault} at {struck.at_s:.0f}s")
    return missed
