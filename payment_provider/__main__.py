"""`python -m payment_provider`: the simulator on `SAGA_PAYMENT_PROVIDER_HOST`:`_PORT`,
its books kept in `SAGA_PAYMENT_PROVIDER_JOURNAL` when set (`make run` sets it)."""

from __future__ import annotations

import uvicorn

from payment_provider.app import create_app
from payment_provider.state import ProviderState
from startup import load_settings


def main() -> None:
    settings = load_settings("python -m payment_provider")
    uvicorn.run(
        create_app(ProviderState(journal=settings.payment_provider_journal)),
        host=settings.payment_provider_host,
        port=settings.payment_provider_port,
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()
