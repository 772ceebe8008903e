"""The one way a process connects to NATS, and how it reconnects.

Every process logs in as its own user (security.nats_login) and keeps
reconnecting for as long as it runs: a relay or a consumer outlives broker
restarts. The first connect is retried the same way, until `stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats
from nats.aio.client import DEFAULT_PENDING_SIZE
from nats.aio.client import Client as NatsClient

from security.nats_login import login_options
from settings_slices import NatsConfig

log = logging.getLogger(__name__)

RECONNECT_WAIT_S = 1.0


async def connect(
    config: NatsConfig, name: str, stop: asyncio.Event, *, buffer_while_disconnected: bool = True
) -> NatsClient | None:
    """Connect as `name`, retrying until the server answers; None if `stop` is set first.

    `buffer_while_disconnected=False`: a publish while the connection is down
    fails at once instead of waiting in the client's buffer (the relay's choice:
    a publish it saw fail must not be flushed later, behind events published
    since, as a late duplicate).
    """

    async def error(err: Exception) -> None:
        # The client's default prints a traceback for every refused connect.
        log.warning("nats: %r", err)

    async def disconnected() -> None:
        if not stop.is_set():  # not our own close on the way out
            log.warning("nats: disconnected; reconnecting")

    async def reconnected() -> None:
        log.info("nats: reconnected")

    connecting = asyncio.ensure_future(
        nats.connect(
            config.servers,
            **login_options(config),
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=RECONNECT_WAIT_S,
            error_cb=error,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            pending_size=DEFAULT_PENDING_SIZE if buffer_while_disconnected else 0,
        )
    )
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if connecting.done():
        return connecting.result()
    connecting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await connecting
    return None
