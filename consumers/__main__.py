"""`python -m consumers`: the order-history consumer, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from consumers.order_history import order_history_consumer
from consumers.service import serve
from settings import Settings


async def _run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(settings, [order_history_consumer()], stop)


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_run(settings))


if __name__ == "__main__":
    main()
