"""OpenTelemetry traces from the API request to the consumer that applies its events.

API request (server span) → StartWorkflow → RunWorkflow → each activity
(temporalio.contrib.opentelemetry.TracingInterceptor, on the client and the
workers) → the outbox row, whose headers carry the W3C `traceparent` of the
activity that wrote it → the relay's publish span, whose `traceparent` rides
in the NATS headers → the consumer's span. Off by default
(`SAGA_TRACING_EXPORTER=none`: the API's no-op tracer, nothing recorded or
injected); `console` prints spans, `otlp` sends them to
`SAGA_TRACING_OTLP_ENDPOINT` (OTLP over HTTP, e.g. a collector or Jaeger).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from temporalio.contrib.opentelemetry import TracingInterceptor

from settings_slices import TracingConfig

TRACER = trace.get_tracer("saga")
# One instance: the client carries it, and workers built from the client inherit it.
TEMPORAL_TRACING = TracingInterceptor()


def configure(tracing: TracingConfig, service: str) -> None:
    """Install the exporter settings choose, for this process; `none` leaves tracing off."""
    if tracing.exporter == "none":
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if tracing.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=tracing.otlp_endpoint)
    else:
        exporter = ConsoleSpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": f"saga-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def inject(carrier: MutableMapping[str, Any]) -> None:
    """Write the current trace context (`traceparent`, ...) into `carrier`."""
    propagate.inject(carrier)


def extract(carrier: Mapping[str, Any] | None) -> Context:
    return propagate.extract(dict(carrier or {}))
