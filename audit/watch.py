"""Stuck sagas as a gauge an alert can watch: `saga_stuck_sagas{workflow_type}`.

The audit finds them when someone runs it (audit.temporal); this asks
Temporal the same question on the worker beside the orders bulkhead, every
SAGA_RECOVERY_INTERVAL_S: how many open sagas (SAGA_TYPES) have had no history
event for SAGA_STUCK_SAGA_GRACE_S. A check that fails (Temporal's visibility
away) leaves the gauge as it was and counts in `saga_stuck_checks_failed_total`,
so a blind check is an alert of its own rather than a quiet zero. A run retrying one step
writes no event until the step ends, so the grace must outlast the longest
legitimate retry (a step's ten attempts, the payment step's deadline); the
audit's own default, ten minutes, does.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from datetime import timedelta

from temporalio.client import Client
from temporalio.common import MetricMeter

from audit.checks import Scope
from audit.temporal import SAGA_TYPES, silent_sagas

log = logging.getLogger(__name__)


class StuckSagaGauge:
    """One series per saga type, all present from the start (0 until a check says more)."""

    def __init__(self, meter: MetricMeter) -> None:
        self._by_type = {
            saga_type: meter.with_additional_attributes({"workflow_type": saga_type}).create_gauge(
                "saga_stuck_sagas", "Open sagas with no history event for the stuck-saga grace"
            )
            for saga_type in SAGA_TYPES
        }
        self._failed = meter.create_counter(
            "saga_stuck_checks_failed", "Stuck-saga checks that could not ask Temporal"
        )
        self.set({})
        self._failed.add(0)  # listed from the start: a rate needs its zero

    def check_failed(self) -> None:
        self._failed.add(1)

    def set(self, counts: Mapping[str, int]) -> None:
        for saga_type, gauge in self._by_type.items():
            gauge.set(counts.get(saga_type, 0))


async def check_once(client: Client, gauge: StuckSagaGauge, scope: Scope) -> Counter[str]:
    counts: Counter[str] = Counter()
    async for execution, _ in silent_sagas(client, scope):
        counts[execution.workflow_type] += 1
    gauge.set(counts)
    return counts


async def watch_stuck_sagas(
    client: Client, gauge: StuckSagaGauge, every: timedelta, grace: timedelta
) -> None:
    """The worker's background check, every `every`."""
    while True:
        await check_or_count(client, gauge, Scope(grace=grace))
        await asyncio.sleep(every.total_seconds())


async def check_or_count(client: Client, gauge: StuckSagaGauge, scope: Scope) -> None:
    """One round; a failed one is logged, counted and leaves the gauge as it was."""
    try:
        await check_once(client, gauge, scope)
    except Exception:  # Temporal away for a while: the next round asks again
        log.exception("stuck-saga check failed")
        gauge.check_failed()
