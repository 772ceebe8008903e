"""Worker metrics through the Temporal SDK's Prometheus exporter.

One endpoint per worker process carries the SDK's own figures (task latencies,
slots, polls, `temporal_activity_execution_latency`, ...), the sagas' counters
(workflows.metrics), each step's duration and outcome (StepMetrics), and the
payment provider's circuit breaker state.
"""

from __future__ import annotations

import time

from temporalio import activity
from temporalio.common import MetricMeter
from temporalio.exceptions import ApplicationError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from observability.logs import correlated, log_context
from resilience.breaker import BreakerState

BREAKER_LEVELS = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


def prometheus_runtime(host: str, port: int) -> Runtime:
    """A runtime serving the SDK's metrics, and ours, at http://host:port/metrics."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=f"{host}:{port}",
                counters_total_suffix=True,
                durations_as_seconds=True,
            )
        )
    )


class StepTelemetry(Interceptor):
    """Every activity attempt: `saga_step_duration_seconds{activity_type, outcome}`, and
    its workflow (with what the logs' hook finds in it) and activity in the log
    context of whatever it logs."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _TimedActivity(next)


class _TimedActivity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> object:
        started = time.perf_counter()
        outcome = "ok"
        info = activity.info()
        context = log_context(
            workflow_id=info.workflow_id,
            activity=info.activity_type,
            **correlated(info.workflow_id or ""),
        )
        try:
            with context:
                return await super().execute_activity(input)
        except ApplicationError as err:
            outcome = "refused" if err.non_retryable else "retried"
            raise
        except BaseException:
            outcome = "retried"
            raise
        finally:
            activity.metric_meter().with_additional_attributes(
                {"outcome": outcome}
            ).create_histogram_float(
                "saga_step_duration_seconds", "One attempt of a saga step", "s"
            ).record(time.perf_counter() - started)


def breaker_gauge(meter: MetricMeter, name: str) -> BreakerGauge:
    return BreakerGauge(meter, name)


class BreakerGauge:
    """`saga_circuit_breaker_state{breaker}`: 0 closed, 1 half-open, 2 open."""

    def __init__(self, meter: MetricMeter, name: str) -> None:
        self._gauge = meter.with_additional_attributes({"breaker": name}).create_gauge(
            "saga_circuit_breaker_state", "0 closed, 1 half-open, 2 open"
        )
        self._gauge.set(0)

    def __call__(self, name: str, old: BreakerState, new: BreakerState) -> None:
        self._gauge.set(BREAKER_LEVELS[new])
