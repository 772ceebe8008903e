"""`python -m relay`: run the outbox relay over the application's outboxes (wiring.served)
until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal

from observability.logs import configure as configure_logging
from observability.tracing import configure as configure_tracing
from relay.service import run_relay
from settings import Settings
from startup import load_settings
from wiring.order_hooks import order_log_fields
from wiring.served import RELAYED


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_relay(settings.relay(), stop, tables=RELAYED)


def main() -> None:
    settings = load_settings("python -m relay")
    configure_logging(settings.logs(), "relay", correlate=order_log_fields)
    configure_tracing(settings.tracing(), "relay")
    asyncio.run(_main(settings))


if __name__ == "__main__":
    main()
