"""`python -m payment_provider`: the simulator on `SAGA_PAYMENT_PROVIDER_HOST`:`_PORT`,
its fault injection on `SAGA_PAYMENT_PROVIDER_ADMIN_HOST`:`_ADMIN_PORT` when that
port is set (payment_provider.listeners), its books kept in
`SAGA_PAYMENT_PROVIDER_JOURNAL` when set (`make run` sets it)."""

from __future__ import annotations

import sys

from payment_provider.listeners import Listeners, serve
from payment_provider.state import ProviderState
from startup import load_settings


def main() -> None:
    settings = load_settings("python -m payment_provider")
    try:
        listeners = Listeners.from_settings(settings)
    except ValueError as err:
        sys.exit(f"python -m payment_provider: {err}")
    state = ProviderState(journal=settings.payment_provider_journal)
    serve(listeners, state, settings.log_level.lower())


if __name__ == "__main__":
    main()
