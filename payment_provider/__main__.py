"""`python -m payment_provider`: the simulator on `SAGA_PAYMENT_PROVIDER_HOST`:`_PORT`."""

from __future__ import annotations

import uvicorn

from payment_provider.app import create_app
from settings import Settings


def main() -> None:
    settings = Settings()
    uvicorn.run(
        create_app(),
        host=settings.payment_provider_host,
        port=settings.payment_provider_port,
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()
