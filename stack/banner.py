"""What `make run` prints once everything is up: where each part answers."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from stack.redaction import redact_url


class Reached(Protocol):
    """Where the running stack answers (the supervisor, once started)."""

    api_base: str
    temporal_address: str
    temporal_ui: str | None
    database_url: str
    nats_url: str
    payment_provider_url: str
    log_dir: Path


def banner(stack: Reached, metrics: list[tuple[str, str, int]]) -> str:
    """The lines for the terminal; `metrics` is each (process, host, port) serving a page."""
    temporal = (
        f"  Temporal UI  {stack.temporal_ui}"
        if stack.temporal_ui
        else f"  Temporal     {stack.temporal_address} (not started here)"
    )
    lines = [
        "",
        "The saga orchestrator is running.",
        f"  API docs     {stack.api_base}/docs",
        temporal,
        f"  PostgreSQL   {redact_url(stack.database_url)}",
        f"  NATS         {redact_url(stack.nats_url)}",
        f"  Payments     {stack.payment_provider_url}/docs (simulator: POST /admin/faults)",
        *_metrics_lines(metrics),
        f"  Server logs  {stack.log_dir}",
        "A crashed app is restarted. `sagactl worker stop` hands the worker over to you "
        "(`sagactl worker start` takes it back).",
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def _metrics_lines(metrics: list[tuple[str, str, int]]) -> list[str]:
    urls = [f"http://{host}:{port}/metrics ({name})" for name, host, port in metrics]
    return [f"  {'Metrics' if n == 0 else '':<12} {url}" for n, url in enumerate(urls)]
