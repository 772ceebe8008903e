"""`python -m payment_provider`: the simulator on `SAGA_PAYMENT_PROVIDER_HOST`:`_PORT`,
its fault injection on `SAGA_PAYMENT_PROVIDER_ADMIN_HOST`:`_ADMIN_PORT` when that
port is set (payment_provider.listeners), its books kept in
`SAGA_PAYMENT_PROVIDER_JOURNAL` when set (`make run` sets it)."""

from __future__ import annotations

import sys

from payment_provider.listeners import Listeners, serve
from payment_provider.state import ProviderState
from settings import Settings
from startup import load_settings


def listeners_of(settings: Settings) -> Listeners:
    return Listeners.checked(
        settings.payment_provider_host,
        settings.payment_provider_port,
        settings.payment_provider_admin_host,
        settings.payment_provider_admin_port,
    )


def main() -> None:
    settings = load_settings("python -m payment_provider")
    try:
        listeners = listeners_of(settings)
    except ValueError as err:
        sys.exit(f"python -m payment_provider: {err}")
    state = ProviderState(journal=settings.payment_provider_journal)
    serve(listeners, state, settings.log_level.lower())


if __name__ == "__main__":
    main()
