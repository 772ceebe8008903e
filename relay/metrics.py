"""The relay's figures in Prometheus text format on a small HTTP endpoint.

    GET http://127.0.0.1:9101/metrics

No framework: one route, read-only, served from the relay's own event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from db.kit_tables import RelayTables
from observability.endpoint import serve as serve_metrics
from relay.admin import cdc_slot, status
from relay.stats import RelayStats
from settings_slices import MetricsEndpoint


async def export(
    endpoint: MetricsEndpoint,
    engine: AsyncEngine,
    tables: RelayTables,
    stats: RelayStats,
    held: Callable[[], int],
) -> asyncio.Server | None:
    """Serve the figures of `tables`' outboxes while the relay runs (None: no port
    configured). `held`: how many partitions this instance publishes now."""
    if not endpoint.enabled:
        return None

    def body() -> Awaitable[str]:
        return render(engine, tables, stats.counters(), held())

    return await serve_metrics(endpoint.host, endpoint.port, body)


async def render(
    engine: AsyncEngine, tables: RelayTables, counters: dict[str, int], partitions_held: int
) -> str:
    lines = [
        "# HELP saga_relay_partitions_held Outbox partitions this instance publishes.",
        "# TYPE saga_relay_partitions_held gauge",
        f"saga_relay_partitions_held {partitions_held}",
    ]
    for name, value in counters.items():
        lines += [f"# TYPE saga_relay_{name}_total counter", f"saga_relay_{name}_total {value}"]
    rows = await status(engine, tables)
    lines += [
        "# HELP saga_relay_lag_seconds Age of the oldest unpublished outbox row.",
        "# TYPE saga_relay_lag_seconds gauge",
        *(f'saga_relay_lag_seconds{{service="{r.service}"}} {r.lag_s or 0.0:.3f}' for r in rows),
        "# TYPE saga_relay_pending_events gauge",
        *(f'saga_relay_pending_events{{service="{r.service}"}} {r.pending}' for r in rows),
        "# TYPE saga_relay_failed_events gauge",
        *(f'saga_relay_failed_events{{service="{r.service}"}} {r.failed}' for r in rows),
    ]
    slot = await cdc_slot(engine)
    if slot is not None:
        lines += [
            "# HELP saga_relay_cdc_slot_retained_bytes WAL the CDC slot holds back.",
            "# TYPE saga_relay_cdc_slot_retained_bytes gauge",
            f"saga_relay_cdc_slot_retained_bytes {slot.retained_bytes or 0}",
            "# HELP saga_relay_cdc_slot_lost 1 once PostgreSQL gave the slot up (WAL limit).",
            "# TYPE saga_relay_cdc_slot_lost gauge",
            f"saga_relay_cdc_slot_lost {int(slot.lost)}",
        ]
    return "\n".join(lines) + "\n"
