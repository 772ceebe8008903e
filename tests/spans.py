"""Spans this process finishes, captured in memory for a test to read."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@contextmanager
def captured_spans() -> Iterator[InMemorySpanExporter]:
    """Capture spans while the block runs.

    The process-wide provider can be set only once, so the first caller sets
    it and later ones add their exporter to it; each stops at its block's end.
    """
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        exporter.shutdown()  # its processor stays, exporting nowhere


def ancestors(span: ReadableSpan, spans: list[ReadableSpan]) -> list[int]:
    by_id = {s.context.span_id: s for s in spans}
    chain: list[int] = []
    while span.parent is not None and span.parent.span_id in by_id:
        chain.append(span.parent.span_id)
        span = by_id[span.parent.span_id]
    return chain
