"""A read-only Prometheus text endpoint served from a process's own event loop.

    GET http://<host>:<port>/metrics

No framework: one route; the relay and the worker each serve their figures on one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


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
