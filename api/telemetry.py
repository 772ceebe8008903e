"""Each API request's telemetry: counts and latencies (Prometheus text at `GET /metrics`),
its server span (observability.tracing) and one access-log line.

Labelled by route template (`/orders/{order_id}`), never by the raw path, so
order ids don't become label values. Each app has its own registry. Every
request also logs one line, with the order it is about in its log context.
"""

from __future__ import annotations

import logging
import re
import time

from fastapi import FastAPI, Response
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Receive, Scope, Send

from domain.orders import workflow_id_for
from observability.logs import bind
from observability.tracing import TRACER

access_log = logging.getLogger("api.access")
_ORDER_PATH = re.compile(r"^/orders/([^/]+)")


class RequestTelemetry:
    """Pure ASGI middleware: it sees every response, problems and 404s included."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter(
            "saga_api_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "saga_api_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        about = _ORDER_PATH.match(scope["path"])
        if about:
            bind(order_id=about.group(1), workflow_id=workflow_id_for(about.group(1)))

        async def record_status(message: dict[str, object]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])  # type: ignore[call-overload]
            await send(message)

        span = TRACER.start_span(f"{scope['method']} {scope['path']}", kind=SpanKind.SERVER)
        try:
            with trace.use_span(span, end_on_exit=True):
                await self.app(scope, receive, record_status)  # type: ignore[arg-type]
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            # Named by route template, like the metrics: ids are attributes, not names.
            span.update_name(f"{scope['method']} {template}")
            span.set_attributes({"http.route": template, "http.response.status_code": status})
            elapsed = time.perf_counter() - started
            self.requests.labels(scope["method"], template, str(status)).inc()
            self.latency.labels(scope["method"], template).observe(elapsed)
            access_log.info(
                "%s %s %d %.1f ms", scope["method"], scope["path"], status, elapsed * 1000
            )


def install(app: FastAPI) -> None:
    registry = CollectorRegistry()
    app.add_middleware(RequestTelemetry, registry=registry)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
