"""The relay's figures in Prometheus text format on a small HTTP endpoint.

    GET http://127.0.0.1:9101/metrics

No framework: one route, read-only, served from the relay's own event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from relay.admin import status

log = logging.getLogger(__name__)


async def render(engine: AsyncEngine, counters: dict[str, int], partitions_held: int) -> str:
    lines = [
        "# HELP saga_relay_partitions_held Outbox partitions this instance publishes.",
        "# TYPE saga_relay_partitions_held gauge",
        f"saga_relay_partitions_held {partitions_held}",
    ]
    for name, value in counters.items():
        lines += [f"# TYPE saga_relay_{name}_total counter", f"saga_relay_{name}_total {value}"]
    rows = await status(engine)
    lines += [
        "# HELP saga_relay_lag_seconds Age of the oldest unpublished outbox row.",
        "# TYPE saga_relay_lag_seconds gauge",
        *(f'saga_relay_lag_seconds{{service="{r.service}"}} {r.lag_s or 0.0:.3f}' for r in rows),
        "# TYPE saga_relay_pending_events gauge",
        *(f'saga_relay_pending_events{{service="{r.service}"}} {r.pending}' for r in rows),
        "# TYPE saga_relay_failed_events gauge",
        *(f'saga_relay_failed_events{{service="{r.service}"}} {r.failed}' for r in rows),
    ]
    return "\n".join(lines) + "\n"


async def serve(host: str, port: int, body: Callable[[], Awaitable[str]]) -> asyncio.Server | None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass  # headers: nothing here needs them
            if request.split()[1:2] == [b"/metrics"]:
                payload, code = (await body()).encode(), "200 OK"
            else:
                payload, code = b"not found\n", "404 Not Found"
            writer.write(
                f"HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except Exception:  # a broken scrape must not disturb the relay
            log.debug("metrics request failed", exc_info=True)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    try:
        return await asyncio.start_server(handle, host, port)
    except OSError as err:
        log.warning("metrics endpoint not started on %s:%s: %s", host, port, err)
        return None
