"""`python -m choreography [--services orders,inventory,...]`: until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import signal

from choreography.service import parse_services, run
from observability.logs import configure as configure_logging
from observability.tracing import configure as configure_tracing
from settings import Settings
from startup import load_settings, require
from wiring.activities import payment_provider_client, reactions
from wiring.order_hooks import order_log_fields


async def _run(settings: Settings, services: list[str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    provider = payment_provider_client(settings.provider())
    try:
        await run(settings.choreography(), reactions(settings, provider), stop, services)
    finally:
        await provider.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m choreography",
        description="Run the services' handlers of choreographed orders.",
    )
    parser.add_argument(
        "--services",
        help="comma list of orders, inventory, payments, shipping, or all "
        "(default: SAGA_CHOREOGRAPHY_SERVICES, all)",
    )
    args = parser.parse_args(argv)
    settings = load_settings("python -m choreography")
    try:
        services = parse_services(args.services or settings.choreography_services)
    except ValueError as err:
        parser.exit(2, f"python -m choreography: {err}\n")
    if "payments" in services:  # its handlers open card tokens to charge
        require(settings, "python -m choreography", "payments")
    configure_logging(settings.logs(), "choreography", correlate=order_log_fields)
    configure_tracing(settings.tracing(), "choreography")
    asyncio.run(_run(settings, services))


if __name__ == "__main__":
    main()
