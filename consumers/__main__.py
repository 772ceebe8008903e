"""`python -m consumers`: the order-history consumer, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal

from consumers.metrics import ConsumerMetrics
from consumers.order_history import order_history_consumer
from consumers.service import serve
from observability.logs import configure as configure_logging
from observability.tracing import configure as configure_tracing
from settings import Settings
from startup import load_settings
from wiring.order_hooks import order_log_fields


async def _run(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    where = settings.consumers()
    metrics = ConsumerMetrics(where.metrics.host, where.metrics.port)
    await serve(where.database_url, where.nats, [order_history_consumer()], stop, metrics=metrics)


def main() -> None:
    settings = load_settings("python -m consumers")
    configure_logging(settings.logs(), "consumers", correlate=order_log_fields)
    configure_tracing(settings.tracing(), "consumers")
    asyncio.run(_run(settings))


if __name__ == "__main__":
    main()
