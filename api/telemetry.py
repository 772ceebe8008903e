"""Each API request's telemetry: counts and latencies (Prometheus text at `GET /metrics`),
its server span (observability.tracing) and one access-log line.

Labelled by route template (`/orders/{order_id}`), never by the raw path, so
order ids don't become label values, and by method only when it is one HTTP
defines for this API; any other method, and a path no route matches, is
`OTHER`. This middleware runs before access control, so a label value a
caller chose would let anyone grow `/metrics` (and this process's memory)
without a key. Each app has its own registry. Every request also logs one
line, with the order it is about in its log context.
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
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "OTHER"


def method_label(method: str) -> str:
    """The method as a label value: one of KNOWN_METHODS, or OTHER."""
    return method if method in KNOWN_METHODS else OTHER


def route_label(scope: Scope) -> str:
    """The template of the route that matched (a 405 still names it), or OTHER."""
    template = getattr(scope.get("route"), "path", None)
    return template if isinstance(template, str) else OTHER


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

        method = method_label(scope["method"])
        span = TRACER.start_span(method, kind=SpanKind.SERVER)
        try:
            with trace.use_span(span, end_on_exit=True):
                await self.app(scope, receive, record_status)  # type: ignore[arg-type]
        finally:
            template = route_label(scope)
            # Named like the metrics: ids and caller-chosen text are attributes, not names.
            span.update_name(f"{method} {template}")
            span.set_attributes({"http.route": template, "http.response.status_code": status})
            elapsed = time.perf_counter() - started
            self.requests.labels(method, template, str(status)).inc()
            self.latency.labels(method, template).observe(elapsed)
            access_log.info(
                "%s %s %d %.1f ms", scope["method"], scope["path"], status, elapsed * 1000
            )


def install(app: FastAPI) -> None:
    registry = CollectorRegistry()
    app.add_middleware(RequestTelemetry, registry=registry)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
