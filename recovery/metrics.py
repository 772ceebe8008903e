"""The recovery sweep's figures on the worker's metrics endpoint.

`saga_2pc_open_past_grace`: 2PC transactions with a branch (a prepared
transaction, an open card hold) older than SAGA_RECOVERY_GRACE_S that the
latest sweep left open, because their coordinator still runs but has not
finished them or because resolving them failed. The sweep resolves an orphan
in one round, so a value above zero for several rounds means a branch holds
its rows (or a customer's money) past its deadline and nothing finishes it.
`saga_recovery_failed_sweeps_total`: rounds that failed as a whole (the
database away), during which the gauge keeps its last value.
"""

from __future__ import annotations

from temporalio.common import MetricMeter


class RecoveryMetrics:
    def __init__(self, meter: MetricMeter) -> None:
        self._open = meter.create_gauge(
            "saga_2pc_open_past_grace", "2PC transactions open past the grace after the last sweep"
        )
        self._failed = meter.create_counter(
            "saga_recovery_failed_sweeps", "Recovery sweeps that failed as a whole"
        )
        # Both listed from the start: nothing is known open before the first round,
        # and a rate over a counter needs its zero.
        self._open.set(0)
        self._failed.add(0)

    def swept(self, left_open: int) -> None:
        self._open.set(left_open)

    def sweep_failed(self) -> None:
        self._failed.add(1)
